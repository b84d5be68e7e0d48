package xdp

// The program is compiled for little-endian targets only (bpfel): deepwall
// runs on amd64 and arm64. -nostdinc keeps the build hermetic: every header
// comes from bpf/include (see its README) or bpf/ itself.
//
//go:generate go tool bpf2go -cc clang -target bpfel -cflags "-O2 -g -Wall -Werror -nostdinc -I./bpf/include" -type flow_key -type flow_value -type port_config -type shadow_config -type acl_lpm_key -type acl_bits -type acl_rule -type acl_meta deepwall bpf/deepwall.c
