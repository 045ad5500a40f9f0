// Package deploy holds the tests of the operator's deployment artefacts: the kustomize tree
// under config/, the Helm chart under charts/dkm-operator, and their agreement with the
// generated CRD and RBAC. Rendered manifests are checked for content and then submitted to a
// real kube-apiserver (envtest): server-side-apply dry runs for kustomize, a real
// `helm install` / `helm uninstall` for the chart. TestSelfManagedWebhookCertificates goes one
// step further: it installs both, runs the operator binary as the installed Deployment says and
// with the RBAC installed for its ServiceAccount, and follows the webhook's self-managed
// certificate from the empty Secret to a pod mutated through the API server.
//
// kustomize and helm are the pinned versions from hack/versions.env under bin/tools; the tests
// run `make tools` when they are missing (a cold helm build takes a few minutes).
package deploy
