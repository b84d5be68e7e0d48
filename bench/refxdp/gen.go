package refxdp

// Same compiler settings and vendored headers as package xdp.
//
//go:generate go tool bpf2go -cc clang -target bpfel -cflags "-O2 -g -Wall -Werror -nostdinc -I../../xdp/bpf/include" refxdp bpf/refxdp.c
