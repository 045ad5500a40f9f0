{{/* Chart name. */}}
{{- define "dkm-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Prefix of every resource name: the release name, plus the chart name unless it is already in it. */}}
{{- define "dkm-operator.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* The operator's base resource name (Deployment, PDB): <fullname>-controller-manager. */}}
{{- define "dkm-operator.managerName" -}}
{{- printf "%s-controller-manager" (include "dkm-operator.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "dkm-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every object. */}}
{{- define "dkm-operator.labels" -}}
helm.sh/chart: {{ include "dkm-operator.chart" . }}
{{ include "dkm-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: dkm-operator
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* Labels that identify this release's objects. */}}
{{- define "dkm-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "dkm-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels that select the operator pods (Deployment, PodDisruptionBudget, Service). */}}
{{- define "dkm-operator.podSelectorLabels" -}}
{{ include "dkm-operator.selectorLabels" . }}
app.kubernetes.io/component: controller-manager
{{- end }}

{{- define "dkm-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "dkm-operator.managerName" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The operator's rules, from files/rbac/role.yaml: a copy of the ClusterRole that
`make manifests` generates (config/rbac/role.yaml), kept identical by `make chart-crds`.
*/}}
{{- define "dkm-operator.generatedRules" -}}
{{- $role := .Files.Get "files/rbac/role.yaml" | fromYaml }}
{{- if not $role.rules }}{{ fail "files/rbac/role.yaml holds no rules: run make chart-crds" }}{{ end }}
{{- toYaml $role.rules }}
{{- end }}

{{/* Whether the operator manages its webhook certificate itself (cert-controller). */}}
{{- define "dkm-operator.selfManagedCerts" -}}
{{- if and .Values.webhook.enabled (eq .Values.webhook.certManagement "self") }}true{{ end }}
{{- end }}

{{/* Whether the metrics endpoint authenticates and authorizes scrapers (--metrics-secure). */}}
{{- define "dkm-operator.secureMetrics" -}}
{{- if and .Values.metrics.enabled .Values.metrics.secure }}true{{ end }}
{{- end }}

{{/* The metrics Service's port name, which the ServiceMonitor scrapes. */}}
{{- define "dkm-operator.metricsPortName" -}}
{{- if .Values.metrics.secure }}https{{ else }}http{{ end }}
{{- end }}

{{/* Whether a generated rule is one of the secure metrics endpoint's (TokenReviews, SubjectAccessReviews). */}}
{{/*
The rule that reads the kube-system namespace, the cluster's identity in AD ownership records:
cluster-scoped, so namespaced mode grants it through a ClusterRole of its own.
*/}}
{{- define "dkm-operator.isClusterIdentityRule" -}}
{{- if and (has "" .apiGroups) (has "namespaces" .resources) }}true{{ end }}
{{- end }}

{{- define "dkm-operator.clusterIdentityRules" -}}
{{- $rules := list }}
{{- range (include "dkm-operator.generatedRules" . | fromYamlArray) }}
{{- if include "dkm-operator.isClusterIdentityRule" . }}
{{- $rules = append $rules . }}
{{- end }}
{{- end }}
{{- toYaml $rules }}
{{- end }}

{{- define "dkm-operator.isMetricsAuthRule" -}}
{{- if or (has "authentication.k8s.io" .apiGroups) (has "authorization.k8s.io" .apiGroups) }}true{{ end }}
{{- end }}

{{/*
The ClusterRole's rules in cluster-wide mode: the generated ones, in their order, with the rules
on admission objects (self-managed certificates: list/watch every MutatingWebhookConfiguration,
write only the operator's own) kept only when certificates are self-managed, their resourceNames
naming this release's configuration instead of config/default's, and the rules of the secure
metrics endpoint (create TokenReviews and SubjectAccessReviews) kept only when it is on.
*/}}
{{- define "dkm-operator.clusterRules" -}}
{{- $self := include "dkm-operator.selfManagedCerts" . }}
{{- $secureMetrics := include "dkm-operator.secureMetrics" . }}
{{- $rules := list }}
{{- range (include "dkm-operator.generatedRules" . | fromYamlArray) }}
{{- if include "dkm-operator.isMetricsAuthRule" . }}
{{- if $secureMetrics }}
{{- $rules = append $rules . }}
{{- end }}
{{- else if not (has "admissionregistration.k8s.io" .apiGroups) }}
{{- $rules = append $rules . }}
{{- else if $self }}
{{- if .resourceNames }}
{{- $_ := set . "resourceNames" (list (include "dkm-operator.webhookConfigName" $)) }}
{{- end }}
{{- $rules = append $rules . }}
{{- end }}
{{- end }}
{{- toYaml $rules }}
{{- end }}

{{/* The admission rules alone: the webhook's ClusterRole in namespaced mode. */}}
{{- define "dkm-operator.webhookRules" -}}
{{- $rules := list }}
{{- range (include "dkm-operator.clusterRules" . | fromYamlArray) }}
{{- if has "admissionregistration.k8s.io" .apiGroups }}
{{- $rules = append $rules . }}
{{- end }}
{{- end }}
{{- toYaml $rules }}
{{- end }}

{{/* The secure metrics endpoint's rules alone: its ClusterRole in namespaced mode. */}}
{{- define "dkm-operator.metricsAuthRules" -}}
{{- $rules := list }}
{{- range (include "dkm-operator.generatedRules" . | fromYamlArray) }}
{{- if include "dkm-operator.isMetricsAuthRule" . }}
{{- $rules = append $rules . }}
{{- end }}
{{- end }}
{{- if not $rules }}{{ fail "files/rbac/role.yaml holds no TokenReview/SubjectAccessReview rules: run make manifests chart-crds" }}{{ end }}
{{- toYaml $rules }}
{{- end }}

{{/*
The rules of a per-namespace Role in namespaced mode: the generated ones, less the Lease rule
(leader election has its own Role in the release namespace) and less the rules on cluster-scoped
objects, which a Role cannot grant: admission objects (the webhook's ClusterRole has them),
TokenReviews and SubjectAccessReviews (the metrics endpoint's ClusterRole has them).
*/}}
{{- define "dkm-operator.namespaceRules" -}}
{{- $rules := list }}
{{- range (include "dkm-operator.generatedRules" . | fromYamlArray) }}
{{- if not (or (has "coordination.k8s.io" .apiGroups) (has "admissionregistration.k8s.io" .apiGroups) (include "dkm-operator.isMetricsAuthRule" .) (include "dkm-operator.isClusterIdentityRule" .)) }}
{{- $rules = append $rules . }}
{{- end }}
{{- end }}
{{- toYaml $rules }}
{{- end }}

{{/*
The pod webhook's object names. With the release dkm-operator they are main.go's defaults
(--webhook-config-name, --webhook-service-name, --webhook-secret-name), the names config/default
uses; the Deployment passes them to the operator anyway.
*/}}
{{- define "dkm-operator.webhookConfigName" -}}
{{- printf "%s-mutating-webhook-configuration" (include "dkm-operator.fullname" .) }}
{{- end }}

{{- define "dkm-operator.webhookServiceName" -}}
{{- printf "%s-webhook-service" (include "dkm-operator.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "dkm-operator.webhookSecretName" -}}
{{- printf "%s-webhook-server-cert" (include "dkm-operator.fullname" .) }}
{{- end }}

{{- define "dkm-operator.certificateName" -}}
{{- printf "%s-serving-cert" (include "dkm-operator.fullname" .) }}
{{- end }}

{{- define "dkm-operator.issuerName" -}}
{{- printf "%s-selfsigned-issuer" (include "dkm-operator.fullname" .) }}
{{- end }}

{{/* Where the operator reads tls.crt and tls.key: main.go's --webhook-cert-dir default. */}}
{{- define "dkm-operator.webhookCertDir" -}}
/tmp/k8s-webhook-server/serving-certs
{{- end }}
