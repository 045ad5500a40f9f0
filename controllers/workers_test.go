package controllers

import (
	"context"
	"net"
	"sync"
	"sync/atomic"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	dkmv1 "github.com/dkm-operator/dkm-operator/api/v1alpha1"
)

var _ = Describe("Reconcile workers", func() {
	// One worker would reconcile the black-holed DKMContainer for 3 dial timeouts of 20 s before
	// anything else; with several, the healthy one becomes Ready while that one still dials.
	It("makes a DKMContainer Ready while another one's DCs black-hole", func(ctx context.Context) {
		f := newFixture(ctx)
		hole := startBlackHoles(3)
		DeferCleanup(hole.close)

		slow := f.dkm("slow", f.path("slow"))
		slow.Spec.Directory.URLs = hole.urls
		slow.Spec.Directory.DialTimeout = &metav1.Duration{Duration: 20 * time.Second}
		Expect(k8sClient.Create(ctx, slow)).To(Succeed())
		Eventually(hole.accepted.Load, eventually, 20*time.Millisecond).Should(BeNumerically(">", 0),
			"the slow DKMContainer's reconcile is dialling")

		start := time.Now()
		fast := f.dkm("fast", f.path("fast"))
		Expect(k8sClient.Create(ctx, fast)).To(Succeed())
		Eventually(func() metav1.ConditionStatus { return condition(ctx, fast, dkmv1.ConditionReady).Status }, 15*time.Second, 50*time.Millisecond).
			Should(Equal(metav1.ConditionTrue))
		GinkgoWriter.Printf("fast Ready %v after its creation, while the slow one dialled\n", time.Since(start).Round(time.Millisecond))
		Expect(condition(ctx, slow, dkmv1.ConditionDirectoryReachable).Reason).NotTo(Equal(dkmv1.ReasonReady))
	})
})

// blackHoles are loopback listeners that accept connections and never answer: a DC behind a
// firewall that drops, as the TLS handshake sees it.
type blackHoles struct {
	urls      []string
	accepted  atomic.Int64
	listeners []net.Listener
	mu        sync.Mutex
	conns     []net.Conn
}

func startBlackHoles(n int) *blackHoles {
	h := &blackHoles{}
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		Expect(err).NotTo(HaveOccurred())
		h.listeners = append(h.listeners, l)
		h.urls = append(h.urls, "ldaps://"+l.Addr().String())
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				h.accepted.Add(1)
				h.mu.Lock()
				h.conns = append(h.conns, c)
				h.mu.Unlock()
			}
		}()
	}
	return h
}

func (h *blackHoles) close() {
	for _, l := range h.listeners {
		_ = l.Close()
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, c := range h.conns {
		_ = c.Close()
	}
}
