{{/*
Names, labels, images, the coordinator peer list and a small TOML writer.
*/}}

{{- define "rhizome.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The full name; component names append "-node" / "-coordinator", so it is
kept short enough for the coordinator's pod names (StatefulSet pods get a
"-N" suffix and a controller-revision-hash label of their own). */}}
{{- define "rhizome.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "rhizome.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "rhizome.nodeName" -}}{{ include "rhizome.fullname" . }}-node{{- end -}}
{{- define "rhizome.coordinatorName" -}}{{ include "rhizome.fullname" . }}-coordinator{{- end -}}
{{- define "rhizome.coordinatorHeadless" -}}{{ include "rhizome.fullname" . }}-coordinator-headless{{- end -}}

{{- define "rhizome.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "rhizome.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Labels of every object; call with (dict "ctx" $ "component" "node"). */}}
{{- define "rhizome.labels" -}}
helm.sh/chart: {{ include "rhizome.chart" .ctx }}
{{ include "rhizome.selectorLabels" . }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
app.kubernetes.io/part-of: rhizome
{{- with .ctx.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "rhizome.selectorLabels" -}}
app.kubernetes.io/name: {{ include "rhizome.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
{{- if .component }}
app.kubernetes.io/component: {{ .component }}
{{- end }}
{{- end -}}

{{/* image reference; call with (dict "ctx" $ "image" .Values.node.image). */}}
{{- define "rhizome.image" -}}
{{- if .image.digest -}}
{{- printf "%s@%s" .image.repository .image.digest -}}
{{- else -}}
{{- printf "%s:%s" .image.repository (default .ctx.Chart.AppVersion .image.tag) -}}
{{- end -}}
{{- end -}}

{{/* ".<ns>.svc[.<clusterDomain>]" */}}
{{- define "rhizome.svcSuffix" -}}
.{{ .Release.Namespace }}.svc{{ with .Values.clusterDomain }}.{{ . }}{{ end }}
{{- end -}}

{{/* Base URL of coordinator replica N; call with (list $ N). */}}
{{- define "rhizome.coordinatorUrl" -}}
{{- $ctx := index . 0 -}}
{{- $i := index . 1 -}}
http://{{ include "rhizome.coordinatorName" $ctx }}-{{ $i }}.{{ include "rhizome.coordinatorHeadless" $ctx }}{{ include "rhizome.svcSuffix" $ctx }}:{{ $ctx.Values.coordinator.port }}
{{- end -}}

{{/* The pod securityContext and container securityContext. */}}
{{- define "rhizome.podSecurityContext" -}}
{{- toYaml .Values.podSecurityContext -}}
{{- end -}}
{{- define "rhizome.securityContext" -}}
{{- toYaml .Values.securityContext -}}
{{- end -}}

{{/* A soft anti-affinity spreading a component over Kubernetes nodes;
call with (dict "ctx" $ "component" "node"). */}}
{{- define "rhizome.defaultAffinity" -}}
podAntiAffinity:
  preferredDuringSchedulingIgnoredDuringExecution:
    - weight: 100
      podAffinityTerm:
        topologyKey: kubernetes.io/hostname
        labelSelector:
          matchLabels:
            {{- include "rhizome.selectorLabels" . | nindent 12 }}
{{- end -}}

{{/*
TOML writer. Values are written inline: strings as JSON strings (a valid TOML
basic string), integral numbers as integers (YAML numbers reach templates as
float64), lists as arrays, maps as inline tables with sorted keys.
*/}}
{{- define "rhizome.toml.key" -}}
{{- if regexMatch "^[A-Za-z0-9_-]+$" . -}}{{ . }}{{- else -}}{{ toJson . }}{{- end -}}
{{- end -}}

{{- define "rhizome.toml.value" -}}
{{- $v := . -}}
{{- if kindIs "string" $v -}}
{{- toJson $v -}}
{{- else if kindIs "bool" $v -}}
{{- $v -}}
{{- else if or (kindIs "float64" $v) (kindIs "float32" $v) -}}
{{- if eq $v (floor $v) -}}{{ int64 $v }}{{- else -}}{{ $v }}{{- end -}}
{{- else if or (kindIs "int" $v) (kindIs "int64" $v) (kindIs "int32" $v) (kindIs "uint64" $v) -}}
{{- $v -}}
{{- else if kindIs "slice" $v -}}
[{{ range $i, $e := $v }}{{ if $i }}, {{ end }}{{ include "rhizome.toml.value" $e }}{{ end }}]
{{- else if kindIs "map" $v -}}
{ {{- range $i, $k := keys $v | sortAlpha }}{{ if $i }},{{ end }} {{ include "rhizome.toml.key" $k }} = {{ include "rhizome.toml.value" (get $v $k) }}{{ end }} }
{{- else -}}
{{- fail (printf "config: a value of kind %s cannot be written to TOML (null?)" (kindOf $v)) -}}
{{- end -}}
{{- end -}}

{{/* An array of tables, `name` and `kind` first: call with
(dict "name" "routes" "items" .Values.config.routes). */}}
{{- define "rhizome.toml.tables" -}}
{{- $name := .name -}}
{{- range $item := .items }}
{{- $first := list -}}
{{- range $k := list "name" "kind" }}{{ if hasKey $item $k }}{{ $first = append $first $k }}{{ end }}{{ end -}}
{{- $rest := without (keys $item | sortAlpha) "name" "kind" }}

[[{{ $name }}]]
{{- range $k := concat $first $rest }}
{{ include "rhizome.toml.key" $k }} = {{ include "rhizome.toml.value" (get $item $k) }}
{{- end }}
{{- end }}
{{- end -}}

{{/* Fields of the node's config that hold secrets: each must be a
reference ({ env } or { file }), never a value, since config.toml is a
ConfigMap. The schema says so too; this guards config.extra and --set. */}}
{{- define "rhizome.checkSecretRefs" -}}
{{- $secretFields := list "key" "token" "client_secret" "signing_key" "admin_token" "encryption_key" -}}
{{- range $section := list "clients" "credentials" -}}
{{- range $i, $item := (get $.Values.config $section) -}}
{{- range $f := $secretFields -}}
{{- if hasKey $item $f -}}
{{- $ref := get $item $f -}}
{{- if not (and (kindIs "map" $ref) (or (hasKey $ref "env") (hasKey $ref "file"))) -}}
{{- fail (printf "config.%s[%d].%s: must be a secret reference { env: NAME } or { file: /path }, not a value (config.toml is a ConfigMap)" $section $i $f) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- range $line := splitList "\n" .Values.config.extra -}}
{{- if regexMatch "^\\s*(key|token|client_secret|signing_key|admin_token|encryption_key|password)\\s*=\\s*['\"]" $line -}}
{{- fail (printf "config.extra: %q sets a secret field to a value; use { env = \"NAME\" } or { file = \"/path\" } (config.toml is a ConfigMap)" (regexFind "^\\s*[a-z_]+" $line | trim)) -}}
{{- end -}}
{{- if regexMatch "^\\s*\\[(node|state|coordinator|limits)\\]\\s*$" $line -}}
{{- fail (printf "config.extra: the chart writes %s itself; set it through the chart's values" (trim $line)) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* state.redis_url without a password: redis.url, or the redis+sentinel://
URL redis.sentinel describes (the first sentinel as the host, the others as
node= parameters). */}}
{{- define "rhizome.redisUrl" -}}
{{- $s := .Values.redis.sentinel | default dict -}}
{{- if $s.masterName -}}
{{- if not $s.hosts -}}
{{- fail "redis.sentinel.hosts: name the sentinels (host:port) that monitor redis.sentinel.masterName" -}}
{{- end -}}
{{- $scheme := ternary "rediss+sentinel" "redis+sentinel" (default false $s.tls) -}}
{{- printf "%s://%s/%d?sentinelServiceName=%s" $scheme (first $s.hosts) (int (default 0 $s.database)) $s.masterName -}}
{{- range rest $s.hosts }}&node={{ . }}{{ end -}}
{{- else -}}
{{- .Values.redis.url -}}
{{- end -}}
{{- end -}}
