package ctl

import (
	"encoding/json"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/deepwall/deepwall/ctl/api"
)

// socketFlag adds --socket to an agent command.
func socketFlag(cmd *cobra.Command, into *string) {
	def := os.Getenv(api.SocketEnv)
	if def == "" {
		def = api.DefaultSocket
	}
	cmd.Flags().StringVar(into, "socket", def, "the agent's API socket (env "+api.SocketEnv+")")
}

// outputFlag adds -o table|json.
func outputFlag(cmd *cobra.Command, into *string) {
	cmd.Flags().StringVarP(into, "output", "o", "table", "output format: table or json")
}

func checkOutput(o string) error {
	if o != "table" && o != "json" {
		return fmt.Errorf("-o %q: want table or json", o)
	}
	return nil
}

// printJSON writes v indented, as the API sends it.
func printJSON(w io.Writer, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}
