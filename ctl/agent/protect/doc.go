// Package protect puts containers inline: it finds a container's veth
// pair, wires a pair of the agent's (AF_XDP, or NFQUEUE between the ports
// of a joint bridge) between the container and its bridge, keeps the
// protected set in ports.db so that the next agent adopts the pairs
// without a gap, follows the containers' addresses for rules that select
// by container, and cleans up after containers that vanish
// (docs/containers.md).
//
// Each protected container has a protection mode: protect (the engine's
// verdicts stand), monitor (nothing is dropped; what the rules would
// block is logged as would-block) and discover (monitor, and the flows
// are learned so that promote can turn them into allow rules).
//
// The files say what they hold: protect.go the protected set (protect,
// unprotect, restore, the watch), kernel.go the kernel side of every
// pair the agent runs (KernelSet), mode.go the protection modes in the
// packet path and the verdict log, learn.go discovery and promotion.
//
// The package reaches the agent only through Deps: the rule manager is
// the Rules interface, the engine the Engine interface, the rest plain
// values and functions.
package protect
