//go:build !linux

package shaping

import (
	"context"
	"errors"
	"log/slog"
	"runtime"

	"github.com/vnetd/vnetd/conf"
)

// errUnsupported is every kernel operation off Linux: the package builds
// there so that the plans can be vetted and tested on any laptop.
var errUnsupported = errors.New("shaping: not supported on " + runtime.GOOS)

// Shaper is the Linux shaper's API; off Linux every call fails.
type Shaper struct{}

// New fails off Linux.
func New(int, *slog.Logger) (*Shaper, error) { return nil, errUnsupported }

func (s *Shaper) Close() error                                             { return errUnsupported }
func (s *Shaper) Probe(context.Context) (LeafKind, error)                  { return 0, errUnsupported }
func (s *Shaper) ApplyPort(context.Context, string, *conf.Bandwidth) error { return errUnsupported }
func (s *Shaper) ClearPort(context.Context, string) error                  { return errUnsupported }
func (s *Shaper) ApplyNetwork(context.Context, string, *conf.Bandwidth, uint64) error {
	return errUnsupported
}
func (s *Shaper) ClearNetwork(context.Context, string) error { return errUnsupported }
func (s *Shaper) Sweep(context.Context) error                { return errUnsupported }
func (s *Shaper) PlugFloor(context.Context, string, *conf.Network, *conf.Port, uint64, *ClassIDs) (uint16, error) {
	return 0, errUnsupported
}
func (s *Shaper) UnplugFloor(context.Context, string, *conf.Network, uint16, uint64, *ClassIDs) error {
	return errUnsupported
}
func (s *Shaper) UpdateFloor(context.Context, string, *conf.Network, *conf.Port, uint64, *ClassIDs) (uint16, error) {
	return 0, errUnsupported
}
func (s *Shaper) Stats(context.Context, string) ([]ClassStats, error) { return nil, errUnsupported }
