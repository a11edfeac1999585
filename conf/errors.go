package conf

import (
	"errors"
	"fmt"
)

// FieldError is one problem with a definition, located by its element path
// (network/ip[2]/dhcp/range[1]) and, when it came from XML, the line.
type FieldError struct {
	Path string
	Line int
	Msg  string
}

func (e *FieldError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s (line %d): %s", e.Path, e.Line, e.Msg)
	}
	return e.Path + ": " + e.Msg
}

// Problems lists the individual errors inside an error returned by Parse,
// Validate or Update (which join every problem they find).
func Problems(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, Problems(e)...)
		}
		return out
	}
	return []error{err}
}

// problems collects FieldErrors; its err joins them.
type problems struct {
	list []error
}

// maxProblems bounds the problems an error lists: a generated or hostile
// definition can have tens of thousands (megabytes of message), and the
// first screenful says what is wrong.
const maxProblems = 50

func (p *problems) add(path, format string, args ...any) {
	p.list = append(p.list, &FieldError{Path: path, Msg: fmt.Sprintf(format, args...)})
}

func (p *problems) addLine(path string, line int, format string, args ...any) {
	p.list = append(p.list, &FieldError{Path: path, Line: line, Msg: fmt.Sprintf(format, args...)})
}

func (p *problems) err() error {
	if len(p.list) <= maxProblems {
		return errors.Join(p.list...)
	}
	shown := append(p.list[:maxProblems:maxProblems], fmt.Errorf("and %d more problems", len(p.list)-maxProblems))
	return errors.Join(shown...)
}
