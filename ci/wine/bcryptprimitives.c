/*
 * Stand-in for Windows' bcryptprimitives.dll, which Wine 8 does not ship.
 *
 * Rust's std (1.78 and later) imports ProcessPrng from bcryptprimitives.dll for HashMap seeds and the like, so
 * every Rust program dies at load under Wine 8 (exit 53, STATUS_DLL_NOT_FOUND c0000135). This DLL exports just
 * ProcessPrng, forwarding to RtlGenRandom (advapi32's SystemFunction036), which Wine implements. ci/windows.sh
 * builds it with mingw and puts it on WINEPATH; it is test infrastructure only, never shipped.
 */
#include <windows.h>

/* RtlGenRandom: declared by hand because ntsecapi.h only names it behind a macro. */
BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);

/* Fills `data` with `len` random bytes. Always succeeds on Windows; here it fails only if RtlGenRandom does. */
__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len)
{
    while (len > 0) {
        ULONG chunk = len > 0x10000000 ? 0x10000000 : (ULONG)len;
        if (!SystemFunction036(data, chunk))
            return FALSE;
        data += chunk;
        len -= chunk;
    }
    return TRUE;
}
