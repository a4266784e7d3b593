#!/bin/sh
# check_isolated_symbols.sh NM OBJECT: fails if the object file of the AVX2
# build of the training GEMMs (model/gemm_avx2.cc) defines a global symbol
# that another object file could also define, so that the linker might keep
# the AVX2 code for callers that run on any CPU (or the reverse). Allowed:
# symbols whose mangled name involves the file's renamed Eigen namespace
# (bnserve_avx2_eigen), the one entry point internal::GemmAvx2, and the
# compiler's DW.ref.__gxx_personality_v0 (the same data in every file).
set -eu
nm_tool=$1
object=$2
symbols=$("$nm_tool" --defined-only --extern-only "$object" | awk '{print $3}')
[ -n "$symbols" ] || { echo "no symbols read from $object"; exit 1; }
echo "$symbols" | grep -q GemmAvx2 || { echo "GemmAvx2 not defined in $object"; exit 1; }
bad=$(echo "$symbols" | grep -v -e bnserve_avx2_eigen -e GemmAvx2 \
  -e '^DW\.ref\.__gxx_personality_v0$' || true)
if [ -n "$bad" ]; then
  echo "global symbols outside the renamed Eigen namespace in $object:"
  echo "$bad" | c++filt
  exit 1
fi
echo "$(echo "$symbols" | wc -l) global symbols, all isolated"
