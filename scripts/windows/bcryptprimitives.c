/*
 * A stand-in bcryptprimitives.dll for Wine 8.0 (Debian 12), which lacks it.
 *
 * Rust's standard library (>= 1.78) gets its random numbers from
 * ProcessPrng in bcryptprimitives.dll, so under that Wine every Rust .exe
 * exits with status 53 ("Library bcryptprimitives.dll not found") before
 * main. Real Windows (8.1 and later) ships the DLL; this file is only ever
 * copied into a Wine prefix by scripts/build-windows, never shipped.
 *
 * ProcessPrng fills the buffer from RtlGenRandom (advapi32's
 * SystemFunction036), which takes a ULONG length: hence the 1 GiB pieces.
 */
#include <windows.h>

BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);

__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len)
{
    while (len > 0) {
        ULONG piece = len > 0x40000000 ? 0x40000000 : (ULONG)len;
        if (!SystemFunction036(data, piece))
            return FALSE;
        data += piece;
        len -= piece;
    }
    return TRUE;
}
