package ctl

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/deepwall/deepwall/dataplane/probe"
	"github.com/spf13/cobra"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// doctorReport is what `deepwall doctor` finds on this host.
type doctorReport struct {
	Kernel     string         `json:"kernel"`
	Interfaces []doctorIface  `json:"interfaces"`
	AFXDP      doctorCheck    `json:"af_xdp"`
	BPFMaps    doctorCheck    `json:"bpf_maps"`
	BTF        doctorCheck    `json:"btf"`
	BPFFS      doctorCheck    `json:"bpffs"`
	IPTables   doctorIPTables `json:"iptables"`
	BrNetfilt  doctorCheck    `json:"br_netfilter"`
	Conntrack  doctorCheck    `json:"conntrack_netlink"`
	CPU        doctorCPU      `json:"cpu"`
	Uses       doctorDecision `json:"deepwall_uses"`
}

// doctorCheck is one capability: there or not, and what was seen.
type doctorCheck struct {
	OK     bool   `json:"ok"`
	Detail string `json:"detail"`
}

// doctorIface is one interface's XDP support.
type doctorIface struct {
	Name    string `json:"name"`
	Type    string `json:"type"`
	Native  bool   `json:"xdp_native"`
	Generic bool   `json:"xdp_generic"`
	Detail  string `json:"detail,omitempty"`
}

// doctorIPTables describes the iptables tools.
type doctorIPTables struct {
	doctorCheck
	Backend string `json:"backend"` // nf_tables or legacy
}

// doctorCPU lists the SIMD features Hyperscan uses.
type doctorCPU struct {
	SSSE3     bool   `json:"ssse3"`
	AVX2      bool   `json:"avx2"`
	AVX512    bool   `json:"avx512"`
	Hyperscan string `json:"hyperscan"`
}

// doctorDecision is what `deepwall run --mode auto` would pick here.
type doctorDecision struct {
	Backend string `json:"mode"`
	Reason  string `json:"reason"`
}

func newDoctorCommand() *cobra.Command {
	var out string
	var ifaces []string
	cmd := &cobra.Command{
		Use:   "doctor",
		Short: "Show what this host supports and which dataplane deepwall will use",
		Long: `doctor checks what deepwall needs, without an agent: the kernel version, XDP
in native (driver) and generic mode on each interface (a program that
passes everything is attached for a moment), AF_XDP sockets, the BPF map
types of the XDP program, BTF, the bpf filesystem, the iptables tools and
their backend (nf_tables or legacy), br_netfilter, conntrack netlink, and
the CPU features Hyperscan uses (SSSE3 needed; AVX2, AVX-512 faster). It
ends with the dataplane "deepwall run --mode auto" would choose and why.

Run it as root (XDP and BPF need it) in the network namespace of the ports
(ip netns exec NS deepwall doctor), or name the ports with --interface.`,
		Example: `  deepwall doctor
  deepwall doctor --interface eth1 --interface eth2 -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			d := runDoctor(ifaces)
			if out == "json" {
				return printJSON(cmd.OutOrStdout(), d)
			}
			return d.print(cmd.OutOrStdout())
		},
	}
	outputFlag(cmd, &out)
	cmd.Flags().StringSliceVar(&ifaces, "interface", nil, "interfaces to check (default: every interface but lo)")
	return cmd
}

// runDoctor checks the host; names limits the interfaces.
func runDoctor(names []string) doctorReport {
	var d doctorReport
	var u unix.Utsname
	if unix.Uname(&u) == nil {
		d.Kernel = unix.ByteSliceToString(u.Release[:])
	}
	links, err := netlink.LinkList()
	if err == nil {
		for _, l := range links {
			a := l.Attrs()
			if a.Name == "lo" || (len(names) > 0 && !slices.Contains(names, a.Name)) {
				continue
			}
			di := doctorIface{Name: a.Name, Type: l.Type()}
			if err := probe.NativeXDP(a.Index); err != nil {
				di.Detail = "native: " + err.Error()
			} else {
				di.Native = true
			}
			di.Generic = probe.GenericXDP(a.Index) == nil
			d.Interfaces = append(d.Interfaces, di)
		}
	}
	if fd, err := unix.Socket(unix.AF_XDP, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0); err != nil {
		d.AFXDP.Detail = err.Error()
	} else {
		unix.Close(fd)
		d.AFXDP = doctorCheck{true, "AF_XDP socket created"}
	}
	d.BPFMaps = doctorCheck{true, "LPM trie, LRU hash, XSKMAP, DEVMAP, per-CPU array"}
	if err := probe.CheckXDP(nil, false); err != nil { // maps and AF_XDP only: no interfaces
		d.BPFMaps = doctorCheck{false, err.Error()}
	}
	if _, err := os.Stat("/sys/kernel/btf/vmlinux"); err == nil {
		d.BTF = doctorCheck{true, "/sys/kernel/btf/vmlinux"}
	} else {
		d.BTF.Detail = "no /sys/kernel/btf/vmlinux"
	}
	var st unix.Statfs_t
	if unix.Statfs("/sys/fs/bpf", &st) == nil && st.Type == unix.BPF_FS_MAGIC {
		d.BPFFS = doctorCheck{true, "mounted at /sys/fs/bpf"}
	} else {
		d.BPFFS = doctorCheck{true, "not mounted at /sys/fs/bpf (the agent mounts it)"}
	}
	d.IPTables = iptablesInfo()
	if _, err := os.Stat("/proc/sys/net/bridge/bridge-nf-call-iptables"); err == nil {
		v, _ := os.ReadFile("/proc/sys/net/bridge/bridge-nf-call-iptables")
		d.BrNetfilt = doctorCheck{true, "loaded; bridge-nf-call-iptables=" + strings.TrimSpace(string(v)) + " in this namespace"}
	} else {
		d.BrNetfilt.Detail = "not loaded (modprobe br_netfilter, host-wide; needed for NFQUEUE on bridge ports)"
	}
	if fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_NETFILTER); err == nil {
		unix.Close(fd)
		d.Conntrack = doctorCheck{true, "nfnetlink socket (flow ends of the NFQUEUE fast path)"}
	} else {
		d.Conntrack.Detail = err.Error()
	}
	d.CPU = cpuFeatures()
	d.Uses = decide(&d)
	return d
}

// decide is --mode auto's choice from the checks.
func decide(d *doctorReport) doctorDecision {
	var noNative []string
	for _, i := range d.Interfaces {
		if !i.Native {
			noNative = append(noNative, i.Name)
		}
	}
	switch {
	case os.Getenv(probe.HideXDPEnv) == "1":
		return doctorDecision{probe.BackendNFQueue, "XDP hidden by " + probe.HideXDPEnv + "=1"}
	case !d.BPFMaps.OK:
		return doctorDecision{probe.BackendNFQueue, "BPF map types missing: " + d.BPFMaps.Detail}
	case !d.AFXDP.OK:
		return doctorDecision{probe.BackendNFQueue, "no AF_XDP sockets"}
	case len(noNative) > 0 && len(noNative) == len(d.Interfaces):
		return doctorDecision{probe.BackendNFQueue, "no interface supports native XDP"}
	case len(noNative) > 0:
		return doctorDecision{probe.BackendXDP, "xdp on ports with native XDP; nfqueue on " + strings.Join(noNative, ", ")}
	}
	return doctorDecision{probe.BackendXDP, "native XDP, AF_XDP and the BPF map types work"}
}

// iptablesInfo finds the iptables tools and their backend.
func iptablesInfo() doctorIPTables {
	var t doctorIPTables
	out, err := exec.Command("iptables", "--version").CombinedOutput()
	if err != nil {
		t.Detail = "iptables: " + err.Error() + " (NFQUEUE mode needs iptables and ip6tables)"
		return t
	}
	v := strings.TrimSpace(string(out))
	t.Backend = "legacy"
	if strings.Contains(v, "nf_tables") {
		t.Backend = "nf_tables"
	}
	t.OK, t.Detail = true, v
	if _, err := exec.LookPath("ipset"); err != nil {
		t.Detail += "; no ipset (ACL rules with CIDR lists need it)"
	}
	return t
}

// cpuFeatures reads the SIMD flags Hyperscan uses from /proc/cpuinfo.
func cpuFeatures() doctorCPU {
	var c doctorCPU
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		c.Hyperscan = "unknown (/proc/cpuinfo: " + err.Error() + ")"
		return c
	}
	defer f.Close()
	flags := cpuFlags(f)
	c.SSSE3, c.AVX2 = flags["ssse3"], flags["avx2"]
	c.AVX512 = flags["avx512f"] && flags["avx512bw"]
	switch {
	case !c.SSSE3:
		c.Hyperscan = "not supported: Hyperscan needs SSSE3"
	case c.AVX512:
		c.Hyperscan = "fastest (AVX-512)"
	case c.AVX2:
		c.Hyperscan = "fast (AVX2)"
	default:
		c.Hyperscan = "supported (SSSE3)"
	}
	return c
}

// cpuFlags returns the flags of the first processor in a cpuinfo file.
func cpuFlags(r io.Reader) map[string]bool {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == "flags" {
			m := map[string]bool{}
			for _, f := range strings.Fields(v) {
				m[f] = true
			}
			return m
		}
	}
	return map[string]bool{}
}

func yes(ok bool) string {
	if ok {
		return "yes"
	}
	return "no"
}

func (d doctorReport) print(w io.Writer) error {
	var b bytes.Buffer
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "kernel\t%s\n", d.Kernel)
	for _, i := range d.Interfaces {
		fmt.Fprintf(tw, "interface %s (%s)\tXDP native %s, generic %s\t%s\n", i.Name, i.Type, yes(i.Native), yes(i.Generic), i.Detail)
	}
	for _, c := range []struct {
		name string
		c    doctorCheck
	}{{"AF_XDP", d.AFXDP}, {"BPF maps", d.BPFMaps}, {"BTF", d.BTF}, {"bpffs", d.BPFFS}} {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", c.name, yes(c.c.OK), c.c.Detail)
	}
	fmt.Fprintf(tw, "iptables\t%s\t%s (backend %s)\n", yes(d.IPTables.OK), d.IPTables.Detail, d.IPTables.Backend)
	fmt.Fprintf(tw, "br_netfilter\t%s\t%s\n", yes(d.BrNetfilt.OK), d.BrNetfilt.Detail)
	fmt.Fprintf(tw, "conntrack\t%s\t%s\n", yes(d.Conntrack.OK), d.Conntrack.Detail)
	fmt.Fprintf(tw, "CPU\tSSSE3 %s, AVX2 %s, AVX-512 %s\tHyperscan: %s\n", yes(d.CPU.SSSE3), yes(d.CPU.AVX2), yes(d.CPU.AVX512), d.CPU.Hyperscan)
	fmt.Fprintf(tw, "deepwall uses\t%s\t%s\n", d.Uses.Backend, d.Uses.Reason)
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := w.Write(b.Bytes())
	return err
}
