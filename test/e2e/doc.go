// Package e2e holds the end-to-end suite: a real Samba AD DC, envtest's kube-apiserver and etcd,
// a real kube-controller-manager (garbage collector and StatefulSet controller) and the
// operator's controllers in an in-process manager. It proves what envtest alone cannot: that a
// replica's key Secret is garbage-collected with its pod by Kubernetes itself, and that a
// StatefulSet failover hands the replacement pod the same key.
//
// Run it with `go test ./test/e2e/ -count=1 -v`. The binaries are built once by
// hack/envtest-binaries.sh controller-manager and the Samba template by hack/samba-dc.sh.
package e2e
