{{/* The chart's name, or nameOverride. */}}
{{- define "gpumarket.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* release-chart, at most 63 characters, or fullnameOverride. */}}
{{- define "gpumarket.fullname" -}}
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

{{- define "gpumarket.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "gpumarket.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* Selector labels of one component: web, websocket, worker, beat, migrate. */}}
{{- define "gpumarket.selector" -}}
app.kubernetes.io/name: {{ include "gpumarket.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "gpumarket.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{- define "gpumarket.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "gpumarket.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "gpumarket.secretName" -}}
{{- default (include "gpumarket.fullname" .) .Values.secrets.existingSecret }}
{{- end }}

{{/* Pod-level security: non-root, no privilege, the runtime's default seccomp profile. */}}
{{- define "gpumarket.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "gpumarket.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: ["ALL"]
{{- end }}

{{/* What every process reads its settings from. */}}
{{- define "gpumarket.envFrom" -}}
- configMapRef:
    name: {{ include "gpumarket.fullname" . }}
- secretRef:
    name: {{ include "gpumarket.secretName" . }}
{{- end }}

{{/* Scheduling shared by every pod. */}}
{{- define "gpumarket.scheduling" -}}
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* /tmp is the only writable path (gunicorn's heartbeat files, Celery's state). */}}
{{- define "gpumarket.tmpVolume" -}}
- name: tmp
  emptyDir: {}
{{- end }}
{{- define "gpumarket.tmpMount" -}}
- name: tmp
  mountPath: /tmp
{{- end }}
