"""A minimal OpenAI-compatible chat server on 127.0.0.1 over the real hf backend, for testing the openai
backend against real HTTP without vLLM (which cannot be installed here)."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from userlm.backends import GenerationRequest, Sampling, get_backend


def serve(model: str):
    backend = get_backend("hf", model, quantization="none", max_batch=8)
    lock = threading.Lock()
    calls = {"n": 0}

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            sampling = Sampling(temperature=body.get("temperature", 0.7), top_p=body.get("top_p", 1.0),
                                max_new_tokens=body.get("max_tokens", 32))
            with lock:
                calls["n"] += 1
                out = backend.generate([GenerationRequest(body["messages"], sampling, body.get("seed") or 0)])[0]
            payload = {"id": "x", "object": "chat.completion", "created": 0, "model": body["model"],
                       "choices": [{"index": 0, "finish_reason": out.finish_reason,
                                    "message": {"role": "assistant", "content": out.text}}],
                       "usage": {"prompt_tokens": 0, "completion_tokens": out.tokens, "total_tokens": out.tokens}}
            data = json.dumps(payload).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, calls
