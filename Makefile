# dkm-operator — every developer and CI entry point. Tool versions live in hack/versions.env.
include hack/versions.env

SHELL := /usr/bin/env bash -o pipefail
.SHELLFLAGS := -ec
ROOT := $(abspath .)
TOOLS := $(ROOT)/bin/tools
CONTROLLER_GEN := $(TOOLS)/controller-gen-$(CONTROLLER_GEN_VERSION)
KUSTOMIZE := $(TOOLS)/kustomize-$(KUSTOMIZE_VERSION)
HELM := $(TOOLS)/helm-$(HELM_VERSION)
# go test's per-binary limit; the whole suite is far below it.
TEST_TIMEOUT ?= 20m
GO_TEST_FLAGS ?=

.PHONY: all
all: build

##@ Development

.PHONY: build
build: ## Build the operator into bin/manager and dkmctl (also the kubectl plugin kubectl-dkm) into bin/dkmctl.
	go build -o bin/manager .
	go build -o bin/dkmctl ./cmd/dkmctl

.PHONY: generate
generate: $(CONTROLLER_GEN) ## Generate deepcopy code (controller-gen object).
	$(CONTROLLER_GEN) object paths="./api/..."

.PHONY: manifests
manifests: $(CONTROLLER_GEN) ## Generate the CRD and RBAC manifests (controller-gen).
	$(CONTROLLER_GEN) rbac:roleName=dkm-operator crd webhook paths="./..." \
	  output:crd:artifacts:config=config/crd/bases output:rbac:artifacts:config=config/rbac

.PHONY: lint
lint: ## gofmt check, go vet, and a staleness check of generated files.
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	go vet ./...
	@$(MAKE) --no-print-directory check-generated

.PHONY: check-generated
check-generated: generate manifests ## Fail if generated code or manifests differ from what is committed.
	@gen="api config/crd/bases config/rbac/role.yaml config/webhook/manifests.yaml"; \
	if [ -n "$$(git status --porcelain -- $$gen)" ]; then \
	  echo "generated files are stale; run 'make generate manifests' and commit:"; git status --porcelain -- $$gen; exit 1; fi

##@ Demo

.PHONY: demo
demo: build ## The main job locally: control plane + Samba AD DC + operator + sample DKMContainer + 3 replicas + failover.
	hack/samba-dc.sh template >/dev/null
	hack/envtest-binaries.sh controller-manager >/dev/null
	go run ./hack/demo

##@ Test

# The race detector is on for every test run; RACE= turns it off for a quick local loop.
RACE ?= -race

.PHONY: test
test: test-env ## Unit, envtest and Samba integration tests with the race detector; installs/builds what is missing first.
	go test ./... -count=1 $(RACE) -timeout $(TEST_TIMEOUT) $(GO_TEST_FLAGS)
	@$(MAKE) --no-print-directory lint
	@hack/leftovers.sh

.PHONY: test-env
test-env: tools cc ## Install Samba, kustomize, helm and a C compiler; build etcd, kube-apiserver, kube-controller-manager and the Samba templates if missing (cached in bin/).
	hack/samba-dc.sh template >/dev/null
	hack/samba-dc.sh pair-template >/dev/null
	hack/envtest-binaries.sh controller-manager >/dev/null

.PHONY: cc
cc: ## Install gcc if missing: the race detector needs cgo.
	@command -v "$$(go env CC)" >/dev/null || { source hack/lib/apt.sh && apt_install gcc libc6-dev; }

.PHONY: doctor
doctor: ## Say what `make demo` and `make test` still need on this machine and how it gets installed.
	@hack/doctor.sh

.PHONY: clean-env
clean-env: ## Stop anything a test run left behind and remove the built test environment.
	hack/leftovers.sh --kill || true
	rm -rf bin/

# make chaos: many random fault schedules (test/chaos); CHAOS_SEED=N[,M] replays given seeds.
CHAOS_COUNT ?= 20
CHAOS_STEPS ?= 16
CHAOS_DCS ?= 2
.PHONY: chaos
chaos: test-env ## Randomized fault schedules against the operator binary and two replicating DCs: CHAOS_COUNT (default 20) schedules, CHAOS_SEED=N replays one.
	go test ./test/chaos -run TestChaos -count=1 -v -timeout 120m -chaos.count=$(CHAOS_COUNT) -chaos.steps=$(CHAOS_STEPS) -chaos.dcs=$(CHAOS_DCS) \
	  $(if $(CHAOS_SEED),-chaos.seed=$(CHAOS_SEED)) $(GO_TEST_FLAGS)

BENCH_FLAGS ?=
.PHONY: bench
bench: ## Time from pod to key Secret (1/100/1000/5000 pods) vs as many bare Secrets created at once; envtest only, no Samba.
	go test ./controllers -run '^$$' -bench BenchmarkProjection -benchtime 1x -timeout $(TEST_TIMEOUT) $(BENCH_FLAGS)

.PHONY: bench-memory
bench-memory: ## Peak RSS of the operator binary with 10,000 unrelated Secrets and pods, and its growth per replica; envtest + Samba.
	go test ./test/memory -run '^$$' -bench BenchmarkOperatorMemory -benchtime 1x -timeout $(TEST_TIMEOUT) $(BENCH_FLAGS)

##@ Deploy

.PHONY: kustomize-build
kustomize-build: $(KUSTOMIZE) ## Print the operator's manifests: kustomize build config/default.
	@$(KUSTOMIZE) build config/default

.PHONY: chart-crds
chart-crds: ## Copy the generated CRDs and ClusterRole (config/) into the Helm chart's files/.
	rm -f charts/dkm-operator/files/crds/*.yaml
	cp config/crd/bases/*.yaml charts/dkm-operator/files/crds/
	cp config/rbac/role.yaml charts/dkm-operator/files/rbac/role.yaml

.PHONY: helm-lint
helm-lint: $(HELM) ## helm lint --strict the chart, cluster-wide and namespaced.
	$(HELM) lint --strict charts/dkm-operator
	$(HELM) lint --strict charts/dkm-operator --set 'watchNamespaces={team-a,team-b}'

##@ Tools

.PHONY: tools
tools: $(KUSTOMIZE) $(HELM) ## Install kustomize and helm (hack/versions.env) into bin/tools.

$(CONTROLLER_GEN):
	GOBIN=$(TOOLS) go install sigs.k8s.io/controller-tools/cmd/controller-gen@$(CONTROLLER_GEN_VERSION)
	mv $(TOOLS)/controller-gen $@

$(KUSTOMIZE):
	GOBIN=$(TOOLS) go install sigs.k8s.io/kustomize/kustomize/v5@$(KUSTOMIZE_VERSION)
	mv $(TOOLS)/kustomize $@

$(HELM):
	GOBIN=$(TOOLS) go install helm.sh/helm/v3/cmd/helm@$(HELM_VERSION)
	mv $(TOOLS)/helm $@

.PHONY: help
help: ## Show this help.
	@awk 'BEGIN {FS = ":.*##"} /^[a-zA-Z_-]+:.*?##/ {printf "  %-16s %s\n", $$1, $$2} /^##@/ {printf "\n%s\n", substr($$0, 5)}' $(MAKEFILE_LIST)
