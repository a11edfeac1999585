//go:build !linux

package dataplane

import (
	"net"

	"github.com/vnetd/vnetd/conf"
)

func (d *Dataplane) CreateTap(string, TapOptions) error { return errUnsupported }
func (d *Dataplane) AttachPort(PortLink) (int, error)   { return 0, errUnsupported }
func (d *Dataplane) DetachPort(PortLink, bool) error    { return errUnsupported }
func (d *Dataplane) DeleteLink(string) error            { return errUnsupported }
func (d *Dataplane) LinkIndex(string) (int, error)      { return 0, errUnsupported }
func (d *Dataplane) CreateMacvtap(string, string, conf.MacvtapMode, net.HardwareAddr, int) (int, error) {
	return 0, errUnsupported
}

func (d *Dataplane) SetVF(string, int, net.HardwareAddr, int) error { return errUnsupported }
