package main

import (
	"fmt"
	"net"
	"strings"
)

// cidrRemap translates addresses of one CIDR to the same offsets in another of equal size:
// the NAT remapping a gateway applies when two clusters' pod CIDRs collide.
type cidrRemap struct {
	from, to *net.IPNet
}

// parseRemap parses "10.42.0.0/16=10.201.0.0/16"; the empty string is no remapping.
func parseRemap(s string) (*cidrRemap, error) {
	if s == "" {
		return nil, nil
	}
	a, b, ok := strings.Cut(s, "=")
	if !ok {
		return nil, fmt.Errorf("remap %q: want FROM=TO", s)
	}
	_, from, err := net.ParseCIDR(a)
	if err != nil {
		return nil, err
	}
	_, to, err := net.ParseCIDR(b)
	if err != nil {
		return nil, err
	}
	if fo, _ := from.Mask.Size(); fo != func() int { n, _ := to.Mask.Size(); return n }() {
		return nil, fmt.Errorf("remap %q: prefix lengths differ", s)
	}
	return &cidrRemap{from: from, to: to}, nil
}

// apply returns ip translated when it is in the source CIDR, and whether it was.
func (r *cidrRemap) apply(ip string) (string, bool) {
	if r == nil {
		return ip, false
	}
	parsed := net.ParseIP(ip).To4()
	if parsed == nil || !r.from.Contains(parsed) {
		return ip, false
	}
	out := make(net.IP, 4)
	base := r.to.IP.To4()
	for i := range out {
		out[i] = base[i] | (parsed[i] &^ r.from.Mask[i])
	}
	return out.String(), true
}

// reverse is the inverse translation.
func (r *cidrRemap) reverse() *cidrRemap {
	if r == nil {
		return nil
	}
	return &cidrRemap{from: r.to, to: r.from}
}
