package edge

import "github.com/prometheus/client_golang/prometheus"

// metrics are the Edge's Prometheus metrics, on the caller's registry.
type metrics struct {
	requests        *prometheus.CounterVec
	notFound        prometheus.Counter
	retries         *prometheus.CounterVec
	up              *prometheus.GaugeVec
	chosen          *prometheus.GaugeVec
	switches        *prometheus.CounterVec
	sessions        *prometheus.GaugeVec
	flows           *prometheus.GaugeVec
	udpDropped      *prometheus.CounterVec
	tcpRefused      *prometheus.CounterVec
	connectFailures *prometheus.CounterVec
	checks          *prometheus.CounterVec
	nodeActive      *prometheus.GaugeVec
	nodeEpoch       *prometheus.GaugeVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "resilience_edge_requests_total",
			Help: "HTTP requests by route, backend (none: the maintenance page, or a SIP 503 over UDP) and status code (499: the client left).",
		}, []string{"route", "backend", "code"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "resilience_edge_retries_total", Help: "Requests that could not connect and were sent to the other side.",
		}, []string{"route"}),
		up: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "resilience_edge_backend_up", Help: "1 while the backend may take traffic: node Active with the highest epoch, healthy, not marked down.",
		}, []string{"route", "backend"}),
		chosen: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "resilience_edge_backend_chosen", Help: "1 for the backend the route sends traffic to.",
		}, []string{"route", "backend"}),
		switches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "resilience_edge_switches_total", Help: "Changes of a route's chosen backend.",
		}, []string{"route"}),
		sessions: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "resilience_edge_open_sessions", Help: "Open WebSocket (upgraded) and SIP TCP sessions.",
		}, []string{"route", "backend"}),
		flows: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "resilience_edge_udp_flows", Help: "Open SIP UDP flows.",
		}, []string{"route"}),
		udpDropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "resilience_edge_udp_dropped_total", Help: "SIP UDP datagrams dropped, by reason.",
		}, []string{"route", "reason"}),
		tcpRefused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "resilience_edge_sip_tcp_refused_total", Help: "SIP TCP connections closed at once: no usable backend, or it refused.",
		}, []string{"route"}),
		connectFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "resilience_edge_connect_failures_total", Help: "Failed connections to a backend.",
		}, []string{"backend"}),
		checks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "resilience_edge_health_checks_total", Help: "Active health checks by result.",
		}, []string{"backend", "result"}),
		nodeActive: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "resilience_edge_node_active", Help: "1 while the node is reachable and Active, as the Edge sees it.",
		}, []string{"node"}),
		nodeEpoch: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "resilience_edge_node_epoch", Help: "The node's last known epoch.",
		}, []string{"node"}),
	}
	m.notFound = m.requests.WithLabelValues("", "none", "404")
	reg.MustRegister(m.requests, m.retries, m.up, m.chosen, m.switches, m.sessions, m.flows,
		m.udpDropped, m.tcpRefused, m.connectFailures, m.checks, m.nodeActive, m.nodeEpoch)
	return m
}
