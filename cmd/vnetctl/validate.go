package main

import (
	"fmt"
	"io"
	"os"

	"github.com/vnetd/vnetd/conf"
)

func init() {
	commands["net-validate"] = command{"net-validate FILE...", "parse and validate network XML files without a daemon", netValidate}
}

// netValidate parses and validates each file: exit 0 when all are valid,
// 1 with every problem of every file printed otherwise.
func netValidate(args []string, stdout, stderr io.Writer) int {
	if isHelp(args) {
		verbHelp(stdout, "net-validate", nil)
		return 0
	}
	if len(args) == 0 {
		fmt.Fprintln(stderr, "usage: vnetctl net-validate FILE...")
		return 2
	}
	status := 0
	for _, file := range args {
		n, err := validateFile(file)
		if err != nil {
			status = 1
			problems := conf.Problems(err)
			fmt.Fprintf(stderr, "%s: invalid (%d %s)\n", file, len(problems), plural(len(problems), "problem", "problems"))
			for _, p := range problems {
				fmt.Fprintln(stderr, indent(p.Error(), "  "))
			}
			continue
		}
		fmt.Fprintf(stdout, "%s: valid\n", file)
		// Definable but not startable: say so without failing validation.
		if err := n.CheckDnsmasqOptions(); err != nil {
			fmt.Fprintf(stderr, "%s: warning: vnetd will refuse to start this network:\n", file)
			for _, p := range conf.Problems(err) {
				fmt.Fprintln(stderr, indent(p.Error(), "  "))
			}
		}
	}
	return status
}

func validateFile(file string) (*conf.Network, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	// Read one byte past the limit so Parse can say the input is too large.
	data, err := io.ReadAll(io.LimitReader(f, conf.MaxInputSize+1))
	if err != nil {
		return nil, err
	}
	n, err := conf.Parse(data)
	if err != nil {
		return nil, err
	}
	return n, n.Validate()
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
