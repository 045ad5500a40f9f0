package controllers

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	dkmv1 "github.com/dkm-operator/dkm-operator/api/v1alpha1"
	"github.com/dkm-operator/dkm-operator/internal/directory"
)

// Metrics are the operator's Prometheus series. Labels carry names, operations and reasons,
// never key material.
type Metrics struct {
	ldapOperations  *prometheus.CounterVec
	driftDetected   *prometheus.CounterVec
	driftRepaired   *prometheus.CounterVec
	keyAgeSeconds   *prometheus.GaugeVec
	reconcileErrors *prometheus.CounterVec
	// watchContainers, watchSearches and watchConnections say how AD changes are seen
	// (directory.Watcher): by change notification or only by the resync.
	watchContainers  *prometheus.GaugeVec
	watchSearches    prometheus.Gauge
	watchConnections prometheus.Gauge
}

// NewMetrics creates the series and registers them with reg (controller-runtime's registry in
// main, a fresh one in tests).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		ldapOperations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dkm_ldap_operations_total", Help: "LDAP operations by operation and result.",
		}, []string{"op", "result"}),
		driftDetected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dkm_acl_drift_detected_total", Help: "Times a DKM container's DACL was found to differ from the template.",
		}, []string{"namespace", "name"}),
		driftRepaired: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dkm_acl_drift_repaired_total", Help: "Times the template DACL was written back (Enforce).",
		}, []string{"namespace", "name"}),
		keyAgeSeconds: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "dkm_active_key_age_seconds", Help: "Age of the active key version.",
		}, []string{"namespace", "name"}),
		reconcileErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dkm_reconcile_errors_total", Help: "Reconciles that ended in a transient error, by condition reason.",
		}, []string{"reason"}),
		watchContainers: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "dkm_directory_watch_containers",
			Help: "DKMContainers by how AD changes to them are seen: notify (AD change notification), connecting or unavailable (the resync only).",
		}, []string{"mode"}),
		watchSearches: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "dkm_directory_watch_searches", Help: "AD change-notification searches open.",
		}),
		watchConnections: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "dkm_directory_watch_connections", Help: "LDAP connections holding AD change-notification searches.",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.ldapOperations, m.driftDetected, m.driftRepaired, m.keyAgeSeconds, m.reconcileErrors,
			m.watchContainers, m.watchSearches, m.watchConnections)
	}
	return m
}

// ObserveLDAP counts one LDAP operation; it is the directory.Pool's observer.
func (m *Metrics) ObserveLDAP(op, result string) {
	if m != nil {
		m.ldapOperations.WithLabelValues(op, result).Inc()
	}
}

// ObserveWatch records how AD changes are seen; it is the directory.Watcher's observer.
func (m *Metrics) ObserveWatch(st directory.WatchStats) {
	if m == nil {
		return
	}
	for _, mode := range directory.WatchModes {
		m.watchContainers.WithLabelValues(mode.String()).Set(float64(st.Containers[mode]))
	}
	m.watchSearches.Set(float64(st.Searches))
	m.watchConnections.Set(float64(st.Connections))
}

// DriftDetected counts drift found on a DKMContainer.
func (m *Metrics) DriftDetected(obj *dkmv1.DKMContainer) {
	if m != nil {
		m.driftDetected.WithLabelValues(obj.Namespace, obj.Name).Inc()
	}
}

// DriftRepaired counts a DACL repair.
func (m *Metrics) DriftRepaired(obj *dkmv1.DKMContainer) {
	if m != nil {
		m.driftRepaired.WithLabelValues(obj.Namespace, obj.Name).Inc()
	}
}

// KeyAge records the active key version's age.
func (m *Metrics) KeyAge(obj *dkmv1.DKMContainer, age time.Duration) {
	if m != nil {
		m.keyAgeSeconds.WithLabelValues(obj.Namespace, obj.Name).Set(age.Seconds())
	}
}

// ReconcileError counts a reconcile that ended in a transient error.
func (m *Metrics) ReconcileError(reason string) {
	if m != nil {
		m.reconcileErrors.WithLabelValues(reason).Inc()
	}
}

// Forget drops the per-object series of a deleted DKMContainer.
func (m *Metrics) Forget(namespace, name string) {
	if m != nil {
		m.driftDetected.DeleteLabelValues(namespace, name)
		m.driftRepaired.DeleteLabelValues(namespace, name)
		m.keyAgeSeconds.DeleteLabelValues(namespace, name)
	}
}
