// Translation unit of liblattq_capi.so: the core and CUDA C APIs in one shared library, for callers that
// load lattq through dlopen/ctypes (the GPU benchmarks).  All symbols come from the whole archives.
#include "lattq/lattq_cuda.h"
extern "C" LATTQ_API int32_t lattq_capi_has_cuda(void) { return 1; }
