# Prints the Mma<F16, N, SS> wrappers of tools/dev/wgmma_probe.cu (session 17): one wgmma.mma_async per element type
# (f16 -> f32, u8 x s8 -> s32), N in 16..256 and A source (registers or shared memory), with their operand lists.
#   python3 tools/dev/wgmma_probe_wrappers.py
def regs(n, start):
    return ",".join("%%%d" % i for i in range(start, start + n))
out = []
for kind in ("f16", "s8"):
    f16 = kind == "f16"
    for N in (16, 32, 64, 128, 256):
        nd = N // 2
        acc, ty = ("f", "float") if f16 else ("r", "int")
        shape = "m64n%dk16.f32.f16.f16" % N if f16 else "m64n%dk32.s32.u8.s8" % N
        outs = ", ".join('"+%s"(d[%d])' % (acc, i) for i in range(nd))
        for ss in (False, True):
            out.append("template <> struct Mma<%s, %d, %s> {" % ("true" if f16 else "false", N, "true" if ss else "false"))
            out.append("  static __device__ __forceinline__ void run(%s (&d)[%d], const uint32_t (&a)[4], uint64_t da, uint64_t db) {" % (ty, nd))
            aop = "%%%d" % nd if ss else "{%s}" % regs(4, nd)
            bi = nd + (1 if ss else 4)
            if f16:
                tail = ", 1, 1, 1, 0, 0" if ss else ", 1, 1, 1, 0"
                out.append('    asm volatile("wgmma.mma_async.sync.aligned.%s {%s}, %s, %%%d%s;\\n"' % (shape, regs(nd, 0), aop, bi, tail))
            else:
                out.append('    asm volatile("{\\n.reg .pred p;\\nsetp.ne.b32 p, %%%d, 0;\\nwgmma.mma_async.sync.aligned.%s {%s}, %s, %%%d, p;\\n}\\n"' % (bi + 1, shape, regs(nd, 0), aop, bi))
            out.append('                 : %s' % outs)
            ins = ('"l"(da), "l"(db)' if ss else '"r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(db)') + ('' if f16 else ', "r"(1)')
            out.append('                 : %s);' % ins)
            if ss:
                out.append("    (void)a;")
            else:
                out.append("    (void)da;")
            out.append("  }\n};")
print("\n".join(out))
