package gateway

import (
	"net"
	"net/http"
	"net/netip"
	"strings"

	"github.com/usher-auth/usher/actors"
)

// clientIP is the connection's address, unless that address is a trusted
// proxy: then the right-most X-Forwarded-For entry that is not a trusted
// proxy. Entries left of it could have been written by anyone.
func clientIP(r *http.Request, trusted []netip.Prefix) string {
	ip := remoteIP(r)
	addr, err := netip.ParseAddr(ip)
	if err != nil || !isTrusted(addr, trusted) {
		return ip
	}
	hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
	for i := len(hops) - 1; i >= 0; i-- {
		hop, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
		if err != nil {
			break // a malformed hop ends what can be believed
		}
		if !isTrusted(hop, trusted) {
			return hop.Unmap().String()
		}
		ip = hop.Unmap().String()
	}
	return ip
}

func isTrusted(addr netip.Addr, trusted []netip.Prefix) bool {
	addr = addr.Unmap()
	for _, p := range trusted {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

func remoteIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// client describes the caller for the node.
func (s *server) client(r *http.Request) actors.Client {
	return actors.Client{IP: clientIP(r, s.trusted), UserAgent: r.UserAgent()}
}
