package ctl

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
)

// Version is set at build time with -ldflags "-X github.com/deepwall/deepwall/ctl.Version=…".
var Version = "dev"

// exitError carries a specific exit status out of a command.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// Main runs the command line with args and returns the process exit status.
func Main(args []string) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return execute(ctx, args, os.Stdout, os.Stderr)
}

// execute runs one command line with the given output streams; an error
// is one line on errw, "deepwall: " and the message.
func execute(ctx context.Context, args []string, out, errw io.Writer) int {
	root := newRootCommand()
	root.SetArgs(args)
	root.SetOut(out)
	root.SetErr(errw)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return 0
	}
	fmt.Fprintf(errw, "deepwall: %v\n", err)
	if ee := (*exitError)(nil); errors.As(err, &ee) {
		return ee.code
	}
	return 1
}

// newRootCommand builds the deepwall command tree: every command and
// subcommand is added here.
func newRootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "deepwall",
		Short: "Inline deep packet inspection firewall for containers",
		Long: `deepwall is an inline firewall for containers that inspects traffic up to
layer 7. XDP programs on a container's veth ports send undecided traffic to
AF_XDP sockets, where a multi-core DPI engine parses protocols and applies
WAF/DLP rules; flows whose verdict is final are allowed or dropped in the
kernel fast path.`,
		Version:       Version,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	rules := newRulesCommand()
	rules.AddCommand(
		newRulesValidateCommand(),    // cmd_rules.go
		newRulesDefaultPackCommand(), // cmd_rules.go
		newRulesListCommand(),        // cmd_rules_set.go
		newRulesShowCommand(),        // cmd_rules_set.go
		newRulesAddCommand(),         // cmd_rules_set.go
		newRulesApplyCommand(),       // cmd_rules_set.go
		newRulesDeleteCommand(),      // cmd_rules_set.go
		newRulesExportCommand(),      // cmd_rules_set.go
		newRulesHistoryCommand(),     // cmd_rules_set.go
		newRulesImportCRSCommand(),   // cmd_rules_import.go
		newRulesLearnedCommand(),     // cmd_rules_learned.go
		newRulesPromoteCommand(),     // cmd_rules_learned.go
	)
	root.AddCommand(
		newRunCommand(),       // cmd_run.go
		newAuditCommand(),     // cmd_audit.go
		newStatusCommand(),    // cmd_status.go
		newFlowsCommand(),     // cmd_flows.go
		rules,                 // cmd_rules*.go
		newProtectCommand(),   // cmd_ports.go
		newUnprotectCommand(), // cmd_ports.go
		newPortsCommand(),     // cmd_ports.go
		newLogsCommand(),      // cmd_logs.go
		newInspectCommand(),   // cmd_inspect.go
		newDoctorCommand(),    // cmd_doctor.go
		newDemoHTTPCommand(),  // cmd_demo.go
		newManCommand(),       // cmd_man.go
	)
	return root
}
