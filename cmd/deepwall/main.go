// Command deepwall is the deepwall agent and its command-line interface.
package main

import (
	"os"

	"github.com/deepwall/deepwall/ctl"
)

func main() { os.Exit(ctl.Main(os.Args[1:])) }
