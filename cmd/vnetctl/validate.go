package main

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/vnetd/vnetd/conf"
)

// netValidate parses and validates each file: exit 0 when all are valid,
// 1 with every problem of every file printed otherwise.
func netValidate(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, "usage: vnetctl net-validate FILE...")
		return 2
	}
	status := 0
	for _, file := range args {
		if err := validateFile(file); err != nil {
			status = 1
			problems := conf.Problems(err)
			fmt.Fprintf(stderr, "%s: invalid (%d %s)\n", file, len(problems), plural(len(problems), "problem", "problems"))
			for _, p := range problems {
				fmt.Fprintln(stderr, indent(p.Error(), "  "))
			}
			continue
		}
		fmt.Fprintf(stdout, "%s: valid\n", file)
	}
	return status
}

func validateFile(file string) error {
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	// Read one byte past the limit so Parse can say the input is too large.
	data, err := io.ReadAll(io.LimitReader(f, conf.MaxInputSize+1))
	if err != nil {
		return err
	}
	n, err := conf.Parse(data)
	if err != nil {
		return err
	}
	return errors.Join(n.Validate(), n.CheckDnsmasqOptions())
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
