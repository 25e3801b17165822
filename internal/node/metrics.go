package node

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the node's Prometheus metrics, on a registry of the
// caller's. A nil *Metrics records nothing.
type Metrics struct {
	status      *prometheus.GaugeVec
	epoch       prometheus.Gauge
	transitions *prometheus.CounterVec
	duration    *prometheus.HistogramVec
	serviceUp   *prometheus.GaugeVec
	restarts    *prometheus.CounterVec
	stayed      prometheus.Counter
	warnings    *prometheus.GaugeVec
	registered  *prometheus.GaugeVec
}

// NewMetrics registers the node's metrics on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		status: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "resilience_node_status", Help: "1 for the node's current status, 0 for the others.",
		}, []string{"status"}),
		epoch: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "resilience_node_epoch", Help: "The node's epoch: grows with every activation in the pair.",
		}),
		transitions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "resilience_transitions_total", Help: "Start and Stop transitions, by result.",
		}, []string{"action", "result"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "resilience_transition_duration_seconds", Help: "How long transitions took.",
			Buckets: []float64{.01, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300},
		}, []string{"action", "result"}),
		serviceUp: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "resilience_service_running", Help: "1 when the service is running (started and ready).",
		}, []string{"service"}),
		restarts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "resilience_service_restarts_total", Help: "Restarts of supervised services that died while Active.",
		}, []string{"service"}),
		stayed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "resilience_stayed_inactive_total", Help: "Restarts where the node stayed Inactive because its peer had taken over.",
		}),
		warnings: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "resilience_node_warning", Help: "1 while a warning of this code is shown.",
		}, []string{"code"}),
		registered: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "resilience_trunk_registered", Help: "1 while the trunk to this MDS is registered.",
		}, []string{"mds"}),
	}
	reg.MustRegister(m.status, m.epoch, m.transitions, m.duration, m.serviceUp, m.restarts, m.stayed, m.warnings, m.registered)
	return m
}

var warningCodes = []string{WarnPeerUnreachableAtStart, WarnStayedInactive, WarnSuperseded, WarnPeerStillActive, WarnBothActive, WarnPeerUnreachable}

func (m *Metrics) observe(s *Snapshot) {
	if m == nil {
		return
	}
	for _, st := range Statuses {
		v := 0.0
		if st == s.Status {
			v = 1
		}
		m.status.WithLabelValues(string(st)).Set(v)
	}
	m.epoch.Set(float64(s.Epoch))
	for _, svc := range s.Services {
		v := 0.0
		if svc.State == ServiceRunning {
			v = 1
		}
		m.serviceUp.WithLabelValues(svc.Name).Set(v)
	}
	for _, code := range warningCodes {
		v := 0.0
		for _, w := range s.Warnings {
			if w.Code == code {
				v = 1
			}
		}
		m.warnings.WithLabelValues(code).Set(v)
	}
}

func (m *Metrics) transition(action, result string, d time.Duration) {
	if m == nil {
		return
	}
	m.transitions.WithLabelValues(action, result).Inc()
	m.duration.WithLabelValues(action, result).Observe(d.Seconds())
}

func (m *Metrics) registrations(regs []Registration) {
	if m == nil {
		return
	}
	for _, r := range regs {
		v := 0.0
		if r.State == "registered" {
			v = 1
		}
		m.registered.WithLabelValues(r.Name).Set(v)
	}
}

func (m *Metrics) restart(service string) {
	if m != nil {
		m.restarts.WithLabelValues(service).Inc()
	}
}

func (m *Metrics) stayedInactive() {
	if m != nil {
		m.stayed.Inc()
	}
}
