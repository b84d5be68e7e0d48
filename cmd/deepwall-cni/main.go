// Command deepwall-cni is deepwall's chained CNI plugin (package ctl/cni);
// `deepwall-cni install` copies it to /opt/cni/bin.
package main

import (
	"os"

	"github.com/containernetworking/cni/pkg/skel"

	"github.com/deepwall/deepwall/ctl/cni"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "install" && os.Getenv("CNI_COMMAND") == "" {
		os.Exit(cni.Install(os.Args[2:], os.Stdout, os.Stderr))
	}
	skel.PluginMainFuncs(cni.Funcs(os.Stdout, os.Stderr), cni.Versions, cni.About)
}
