#!/usr/bin/env bash
# Issue 25 item 1 on one lent H200: host time a decode step (`chunk_decode.py`): uniforms drawn ahead
# (static-ahead), k steps a CUDA graph (static-chunk) or the step graph replayed k times a sync (static-loop)
# against static-fast (live attention + in-graph wide draw,
# the last session's best), side by side in one process, alternating (7B at 128 live, 0.5B at 32). Usage:
# DATA=prepared-data-dir CHUNK=8 bash benchmarks/gpu_host.sh STAGE...   (tests d05 d7; logs in $OUT)
# The stages are gpu_topp.sh's, with this study's schedulers (S) and tests.
S=${S:-static-fast,static-ahead,static-chunk,static-loop}
S05=$S S7=$S TESTS=${TESTS:-"tests/test_chunk_decode.py tests/test_live_attention.py tests/test_static_cache.py \
tests/test_sampling_wide.py"} exec bash "$(dirname "$0")/gpu_topp.sh" "$@"
