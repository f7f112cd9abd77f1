#!/usr/bin/env python3
"""Flash and static RAM of a 32-bit little-endian ELF (no binutils needed).

flash = allocated sections with contents (code, read-only data, .data's load image)
ram   = allocated writable sections (.data, .bss, .uninit); the stack is extra.
"""
import struct
import sys

SHF_WRITE, SHF_ALLOC = 0x1, 0x2
SHT_NOBITS = 8


def sections(path):
    data = open(path, "rb").read()
    if data[:4] != b"\x7fELF" or data[4] != 1 or data[5] != 1:
        sys.exit(f"{path}: not a 32-bit little-endian ELF")
    shoff, = struct.unpack_from("<I", data, 0x20)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x2E)
    hdrs = [struct.unpack_from("<IIIIII", data, shoff + i * shentsize) for i in range(shnum)]
    strtab_off = hdrs[shstrndx][4]
    for name, typ, flags, _addr, _off, size in hdrs:
        end = data.index(b"\0", strtab_off + name)
        yield data[strtab_off + name:end].decode(), typ, flags, size


def main(path):
    flash = ram = 0
    rows = []
    for name, typ, flags, size in sections(path):
        if not flags & SHF_ALLOC or size == 0:
            continue
        in_flash = typ != SHT_NOBITS
        in_ram = bool(flags & SHF_WRITE)
        flash += size if in_flash else 0
        ram += size if in_ram else 0
        where = "+".join(w for w, on in (("flash", in_flash), ("ram", in_ram)) if on)
        rows.append(f"  {name:<16} {size:>8}  {where}")
    print("\n".join(rows))
    print(f"flash: {flash} bytes ({flash / 1024:.1f} KiB), static RAM: {ram} bytes ({ram / 1024:.1f} KiB)")


if __name__ == "__main__":
    main(sys.argv[1])
