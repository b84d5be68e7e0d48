package cni

import (
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/deepwall/deepwall/ctl/api"
)

// defaultBinDir is where runtimes look for CNI plugins.
const defaultBinDir = "/opt/cni/bin"

// Install is `deepwall-cni install [-dir DIR] [-socket PATH]`: it copies
// the running binary to DIR/deepwall-cni (replaced atomically: a runtime
// may be executing the old one) and prints the conflist entry to add
// after the interface plugin.
func Install(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet(Type+" install", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("dir", defaultBinDir, "the runtime's CNI plugin directory")
	socket := fs.String("socket", api.DefaultSocket, "the agent's API socket")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if err := install(*dir); err != nil {
		fmt.Fprintf(stderr, "%s install: %v\n", Type, err)
		return 1
	}
	fmt.Fprintf(stdout, "installed %s\nadd to the \"plugins\" of the network's conflist, after the bridge (or ptp) plugin:\n%s",
		filepath.Join(*dir, Type), snippet(*socket))
	return 0
}

// snippet is the plugin's conflist entry.
func snippet(socket string) string {
	return fmt.Sprintf("    {\n      \"type\": %q,\n      \"socket\": %q,\n      \"failClosed\": true,\n      \"mode\": %q\n    }\n", Type, socket, api.ModeProtect)
}

func install(dir string) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	src, err := os.Open(self)
	if err != nil {
		return err
	}
	defer src.Close()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, "."+Type+"-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // after a successful rename: no such file
	if _, err := io.Copy(tmp, src); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(0o755); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), filepath.Join(dir, Type))
}
