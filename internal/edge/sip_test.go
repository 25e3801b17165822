package edge

import (
	"bufio"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/xivo-resilience/resilience/internal/node"
)

func sipRoute(main, standby *sipServer) SIPRoute {
	return SIPRoute{Name: "sip", Listen: "127.0.0.30:0", UDP: true, TCP: true,
		Main:    Backend{Name: "main-sip", Node: "xivo-main", Address: main.addr},
		Standby: Backend{Name: "standby-sip", Node: "xivo-standby", Address: standby.addr}}
}

// askUDP sends an OPTIONS on c and returns who answered.
func askUDP(t *testing.T, c *net.UDPConn, callID string) string {
	t.Helper()
	if _, err := c.Write(sipOptions(callID)); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	buf := make([]byte, 4096)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatalf("no answer to %s: %v", callID, err)
	}
	return serverOf(buf[:n])
}

func askTCP(c net.Conn, br *bufio.Reader, callID string) (string, error) {
	if _, err := c.Write(sipOptions(callID)); err != nil {
		return "", err
	}
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	msg, err := readSIP(br)
	if err != nil {
		return "", err
	}
	return serverOf(msg), nil
}

func TestEdge_SIP(t *testing.T) {
	main, standby := startSIP(t, "127.0.0.2", "main"), startSIP(t, "127.0.0.3", "standby")
	xm, xs := newFakeNode("xivo-main", node.Active, 1), newFakeNode("xivo-standby", node.Inactive, 0)
	e, _, _ := startEdge(t, Options{SIP: []SIPRoute{sipRoute(main, standby)}, Nodes: nodes(xm, xs)})
	addr := e.SIPAddr("sip")
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	// A connected socket only takes datagrams from the Edge's address:
	// answers must come back through the listening socket.
	phone, err := net.DialUDP("udp", nil, ua)
	if err != nil {
		t.Fatal(err)
	}
	defer phone.Close()
	tcp, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer tcp.Close()
	tbr := bufio.NewReader(tcp)

	t.Run("before the switch, main answers", func(t *testing.T) {
		for i := range 3 {
			if got := askUDP(t, phone, fmt.Sprint("udp-before-", i)); got != "main" {
				t.Fatalf("UDP answered by %q, want main", got)
			}
		}
		if got, err := askTCP(tcp, tbr, "tcp-before"); err != nil || got != "main" {
			t.Fatalf("TCP answered by %q (%v), want main", got, err)
		}
		rs := e.Status().Routes[0]
		if rs.Backends[0].Flows != 1 || rs.Backends[0].Sessions != 1 {
			t.Errorf("flows %d sessions %d, want 1 and 1", rs.Backends[0].Flows, rs.Backends[0].Sessions)
		}
	})

	xs.set(node.Active, 2)
	waitChosen(t, e, "sip", "standby-sip")

	t.Run("after the switch, standby answers", func(t *testing.T) {
		if got := askUDP(t, phone, "udp-after"); got != "standby" {
			t.Fatalf("UDP answered by %q, want standby", got)
		}
		// The old TCP session is closed so that the phone reconnects.
		tcp.SetReadDeadline(time.Now().Add(2 * time.Second))
		if _, err := tbr.ReadByte(); err == nil {
			t.Fatal("old TCP session still open")
		}
		c, err := net.DialTimeout("tcp", addr, 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if got, err := askTCP(c, bufio.NewReader(c), "tcp-after"); err != nil || got != "standby" {
			t.Fatalf("TCP answered by %q (%v), want standby", got, err)
		}
		rs := e.Status().Routes[0]
		if rs.Backends[0].Flows != 0 || rs.Backends[1].Flows != 1 {
			t.Errorf("flows main %d standby %d, want 0 and 1", rs.Backends[0].Flows, rs.Backends[1].Flows)
		}
	})

	t.Run("no usable side: datagrams dropped, connections refused", func(t *testing.T) {
		xm.set(node.Inactive, 1)
		xs.set(node.Inactive, 2)
		waitChosen(t, e, "sip", "")
		phone.Write(sipOptions("udp-none"))
		phone.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		if _, err := phone.Read(make([]byte, 100)); err == nil {
			t.Error("an answer with no usable side")
		}
		c, err := net.DialTimeout("tcp", addr, 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		if _, err := c.Read(make([]byte, 1)); err == nil {
			t.Error("TCP connection not closed")
		}
	})
}

func TestEdge_SIPFlowLimits(t *testing.T) {
	main, standby := startSIP(t, "127.0.0.2", "main"), startSIP(t, "127.0.0.3", "standby")
	xm, xs := newFakeNode("xivo-main", node.Active, 1), newFakeNode("xivo-standby", node.Inactive, 0)
	r := sipRoute(main, standby)
	r.TCP = false
	e, _, reg := startEdge(t, Options{SIP: []SIPRoute{r}, Nodes: nodes(xm, xs), SIPMaxFlows: 2, SIPFlowIdle: 100 * time.Millisecond})
	ua, _ := net.ResolveUDPAddr("udp", e.SIPAddr("sip"))
	var phones []*net.UDPConn
	for range 3 {
		p, err := net.DialUDP("udp", nil, ua)
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		phones = append(phones, p)
	}
	askUDP(t, phones[0], "a")
	askUDP(t, phones[1], "b")
	phones[2].Write(sipOptions("c"))
	phones[2].SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	if _, err := phones[2].Read(make([]byte, 100)); err == nil {
		t.Error("a third flow past the limit of 2")
	}
	if got := counter(t, reg, "resilience_edge_udp_dropped_total", map[string]string{"reason": "flow_limit"}); got != 1 {
		t.Errorf("dropped{flow_limit} = %v", got)
	}
	waitFor(t, 2*time.Second, "idle flows expire", func() bool { return e.Status().Routes[0].Backends[0].Flows == 0 })
	if got := askUDP(t, phones[2], "c2"); got != "main" {
		t.Errorf("after expiry: %q", got)
	}
}
