"""How long preparing all of the embedded ShareGPT conversations takes (goal: under 60 s on 2 cores)."""

import tempfile
import time

from userlm.data.prepare import PrepareConfig, prepare
from userlm.threads import machine_line

print(machine_line(), flush=True)

with tempfile.TemporaryDirectory() as tmp:
    started = time.perf_counter()
    manifest = prepare(PrepareConfig(sources=["sharegpt"], out=f"{tmp}/data"))
    seconds = time.perf_counter() - started
src = manifest["sources"][0]
print(f"sharegpt: {src['trees'] + src['empty_records']:,} whole conversations read "
      f"({src['trees']:,} kept, {src['empty_records']} empty), {src['dropped_bytes']:,} trailing bytes dropped")
print(f"prepare: {seconds:.1f} s; goal 60 s; ratio to goal {seconds / 60:.3f}")
