# Sourced by the scripts: use the offline data beside the project when it is there.
if [ -z "${VAELAB_DATA:-}" ] && [ -d "$(dirname "${BASH_SOURCE[0]}")/../../shared/data" ]; then
  export VAELAB_DATA="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../shared/data" && pwd)"
fi
