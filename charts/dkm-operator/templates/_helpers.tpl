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
{{- define "dkm-operator.clusterRules" -}}
{{- $role := .Files.Get "files/rbac/role.yaml" | fromYaml }}
{{- if not $role.rules }}{{ fail "files/rbac/role.yaml holds no rules: run make chart-crds" }}{{ end }}
{{- toYaml $role.rules }}
{{- end }}

{{/*
The rules of a per-namespace Role in namespaced mode: the ClusterRole's, less the Lease rule
(leader election has its own Role in the release namespace) and less the rules on cluster-scoped
admission objects, which a Role cannot grant (they belong to the pod webhook, not yet in the chart).
*/}}
{{- define "dkm-operator.namespaceRules" -}}
{{- $rules := list }}
{{- range (include "dkm-operator.clusterRules" . | fromYamlArray) }}
{{- if not (or (has "coordination.k8s.io" .apiGroups) (has "admissionregistration.k8s.io" .apiGroups)) }}
{{- $rules = append $rules . }}
{{- end }}
{{- end }}
{{- toYaml $rules }}
{{- end }}
