// Package deb holds the Debian package of deepwall (nfpm.yaml, the
// maintainer scripts in scripts/, built by `make deb`) and its test, which
// builds it, installs it on the machine, runs the agent the way the
// systemd unit does and purges it again. It has no Go code of its own.
package deb
