//go:build !linux

package dataplane

import (
	"errors"
	"log/slog"
	"runtime"

	"github.com/vishvananda/netlink"

	"github.com/vnetd/vnetd/conf"
)

// errUnsupported is every kernel operation off Linux: the package builds there
// so that the pure parts can be vetted and tested on any laptop.
var errUnsupported = errors.New("dataplane: not supported on " + runtime.GOOS)

// Dataplane is the Linux dataplane's API; off Linux every call fails.
type Dataplane struct{}

// New returns a Dataplane whose calls all fail off Linux.
func New(*netlink.Handle, Sysctl, *slog.Logger) *Dataplane { return &Dataplane{} }

func (d *Dataplane) LinkExists(string) (bool, error)     { return false, errUnsupported }
func (d *Dataplane) CheckCollisions(*conf.Network) error { return errUnsupported }
func (d *Dataplane) Start(*conf.Network) (int, error)    { return 0, errUnsupported }
func (d *Dataplane) Stop(*conf.Network) error            { return errUnsupported }
func (d *Dataplane) Deactivate(*conf.Network) error      { return errUnsupported }
func (d *Dataplane) Adopt(*conf.Network, int) error      { return errUnsupported }
