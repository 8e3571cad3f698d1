#!/usr/bin/env bash
# The wheels bench/gpu_check.sh installs on a lent GPU machine (Python 3.12,
# torch with CUDA, numpy, scipy, scikit-learn, PyYAML, onnxruntime; no
# network): the emotion2vec path of FunASR and what emoq's analysis code
# imports, for cp312 manylinux x86-64, at this repository's pinned versions.
#
#   bash bench/gpu_wheels.sh [DIR]     # default .whl (git-ignored; about 25 MB)
#
# Then: run(command="bash bench/gpu_check.sh", carry=[".whl"]).
set -euo pipefail
DIR=${1:-.whl}
PY=${PY:-.venv/bin/python}
mkdir -p "$DIR"
pin() { grep -i -m1 -E "^${1//[-_]/[-_]}==" constraints.txt; }  # - and _ alike, as pip reads names
# FunASR's own requirements pull in far more (torchaudio, modelscope, ...):
# the emotion2vec path needs only these, so each comes without its dependencies.
packages=(
  funasr omegaconf kaldiio librosa lazy_loader tqdm
  requests urllib3 idna certifi charset-normalizer
  pydantic pydantic_core pydantic-settings annotated-types typing-inspection python-dotenv
  soundfile cffi pycparser soxr silero-vad SQLAlchemy greenlet typing_extensions
)
pins=()
for name in "${packages[@]}"; do
  pins+=("$(pin "$name" || { echo "no pin for $name in constraints.txt" >&2; exit 1; })")
done
"$PY" -m pip download --quiet --no-deps --only-binary=:all: --dest "$DIR" \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  --platform any --python-version 3.12 --implementation cp --abi cp312 --abi abi3 --abi none "${pins[@]}"
# antlr4-python3-runtime 4.9.3 (omegaconf's parser) is only a source archive
# on the registry; it is pure Python, so a wheel built here runs there.
"$PY" -m pip wheel --quiet --no-deps --wheel-dir "$DIR" "$(pin antlr4-python3-runtime)"
ls "$DIR"/*.whl | wc -l
du -sh "$DIR"
