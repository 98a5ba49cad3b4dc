{{/*
The bloscar sidecar, for inclusion in any pod template.

Argument: a dict with
  root     the template context ($), for .Capabilities and the chart's appVersion;
  values   the bloscar chart's values (default root.Values; a chart that depends on
           bloscar passes $.Values.bloscar);
  role     inbound, outbound or both (default inbound);
  forward  optional, for the inbound or outbound role: the local app (inbound) or the
           peer's bloscar Service (outbound); default values.sidecar.inbound.forward
           or values.sidecar.outbound.forward;
  inboundForward, outboundForward
           optional, the same per side (for the both role);
  appStopSeconds
           optional, for bloscar.terminationGracePeriodSeconds: how long the app takes
           to stop (preStop delay plus drain), which a native sidecar waits out first.

"bloscar.sidecar" renders a one-item YAML list (the container). Most pod templates want
the mode-aware pair instead, which renders the container in the right list for the
configured sidecar.type and nothing in the other:

  {{- $args := dict "root" $ "values" $.Values.bloscar "role" "inbound" "forward" "127.0.0.1:8001" }}
  spec:
    terminationGracePeriodSeconds: {{ include "bloscar.terminationGracePeriodSeconds" $args }}
    {{- with include "bloscar.initContainers" $args | trim }}
    initContainers:
      {{- . | nindent 6 }}
    {{- end }}
    containers:
      - name: app
        ...
      {{- include "bloscar.containers" $args | nindent 6 }}
*/}}
{{- define "bloscar.sidecar" -}}
{{- $v := .values | default .root.Values -}}
{{- $role := .role | default "inbound" -}}
{{- if not (has $role (list "inbound" "outbound" "both")) -}}
{{- fail (printf "bloscar.sidecar: role must be inbound, outbound or both, not %q" $role) -}}
{{- end -}}
{{- $s := $v.sidecar -}}
{{- $inbound := or (eq $role "inbound") (eq $role "both") -}}
{{- $outbound := or (eq $role "outbound") (eq $role "both") -}}
{{- $inboundForward := .inboundForward | default (and (eq $role "inbound") .forward) | default $s.inbound.forward -}}
{{- $outboundForward := .outboundForward | default (and (eq $role "outbound") .forward) | default $s.outbound.forward -}}
{{- $tls := include "bloscar.tls" (dict "values" $v "role" $role) | fromYaml -}}
{{- $bind := $s.bindAddress -}}
{{- if contains ":" $bind }}{{ $bind = printf "[%s]" $bind }}{{ end -}}
- name: {{ $s.name }}
  image: {{ include "bloscar.image" . | quote }}
  imagePullPolicy: {{ $v.image.pullPolicy }}
  {{- if eq $s.type "native" }}
  # A native sidecar: started (and ready) before the app containers, stopped after them.
  restartPolicy: Always
  {{- end }}
  ports:
    {{- if $inbound }}
    - name: bloscar-in
      containerPort: {{ $s.ports.inbound }}
      protocol: TCP
    {{- end }}
    - name: bloscar-admin
      containerPort: {{ $s.ports.admin }}
      protocol: TCP
  env:
    - name: BLOSCAR_MODE
      value: {{ $role | quote }}
    {{- if $inbound }}
    - name: BLOSCAR_INBOUND_LISTEN
      value: {{ printf "%s:%d" $bind (int $s.ports.inbound) | quote }}
    - name: BLOSCAR_INBOUND_FORWARD
      value: {{ $inboundForward | required "bloscar: sidecar.inbound.forward is required for the inbound role" | quote }}
    {{- end }}
    {{- if $outbound }}
    - name: BLOSCAR_OUTBOUND_LISTEN
      value: {{ printf "127.0.0.1:%d" (int $s.ports.outbound) | quote }}
    - name: BLOSCAR_OUTBOUND_FORWARD
      value: {{ $outboundForward | required "bloscar: sidecar.outbound.forward (host:port of the server's bloscar Service) is required for the outbound role" | quote }}
    {{- end }}
    - name: BLOSCAR_ADMIN_LISTEN
      value: {{ printf "%s:%d" $bind (int $s.ports.admin) | quote }}
    - name: BLOSCAR_CODEC
      value: {{ $v.config.codec | quote }}
    - name: BLOSCAR_MIN_TENSOR_BYTES
      value: {{ include "bloscar.envNumber" $v.config.minTensorBytes | quote }}
    - name: BLOSCAR_MAX_MESSAGE_BYTES
      value: {{ include "bloscar.envNumber" $v.config.maxMessageBytes | quote }}
    - name: BLOSCAR_UNKNOWN_PEER
      value: {{ $v.config.unknownPeer | quote }}
    - name: BLOSCAR_LINK_MBPS
      value: {{ include "bloscar.envNumber" $v.config.linkMbps | quote }}
    {{- with $v.config.ndarrayRules }}
    - name: BLOSCAR_NDARRAY_RULES
      value: {{ . | quote }}
    {{- end }}
    - name: BLOSCAR_STREAM_IDLE_TIMEOUT_SECS
      value: {{ include "bloscar.envNumber" $v.config.streamIdleTimeoutSecs | quote }}
    - name: BLOSCAR_SHUTDOWN_GRACE_SECS
      value: {{ include "bloscar.envNumber" $v.config.shutdownGraceSecs | quote }}
    - name: BLOSCAR_LOG
      value: {{ $v.config.log | quote }}
    - name: BLOSCAR_LOG_FORMAT
      value: {{ $v.config.logFormat | quote }}
    {{- if $tls.inbound }}
    - name: BLOSCAR_INBOUND_TLS_CERT
      value: {{ printf "%s/tls.crt" $tls.inbound | quote }}
    - name: BLOSCAR_INBOUND_TLS_KEY
      value: {{ printf "%s/tls.key" $tls.inbound | quote }}
    {{- if $v.tls.inbound.clientAuth }}
    - name: BLOSCAR_INBOUND_TLS_CLIENT_CA
      value: {{ printf "%s/ca.crt" $tls.inbound | quote }}
    {{- with $v.tls.inbound.allowedSans }}
    - name: BLOSCAR_INBOUND_TLS_ALLOWED_SANS
      value: {{ join "," . | quote }}
    {{- end }}
    {{- end }}
    {{- end }}
    {{- if $tls.outbound }}
    - name: BLOSCAR_OUTBOUND_TLS_CA
      value: {{ printf "%s/ca.crt" $tls.outbound | quote }}
    {{- with $v.tls.outbound.serverName }}
    - name: BLOSCAR_OUTBOUND_TLS_SERVER_NAME
      value: {{ . | quote }}
    {{- end }}
    {{- if $v.tls.outbound.clientCert }}
    - name: BLOSCAR_OUTBOUND_TLS_CERT
      value: {{ printf "%s/tls.crt" $tls.outbound | quote }}
    - name: BLOSCAR_OUTBOUND_TLS_KEY
      value: {{ printf "%s/tls.key" $tls.outbound | quote }}
    {{- end }}
    {{- end }}
    {{- with $s.extraEnv }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  # /ready answers 200 once every listener is bound (503 while draining): a native
  # sidecar holds the app containers back until then.
  startupProbe:
    httpGet:
      path: /ready
      port: bloscar-admin
    periodSeconds: {{ $s.probes.startup.periodSeconds }}
    timeoutSeconds: {{ $s.probes.startup.timeoutSeconds }}
    failureThreshold: {{ $s.probes.startup.failureThreshold }}
  livenessProbe:
    httpGet:
      path: /live
      port: bloscar-admin
    periodSeconds: {{ $s.probes.liveness.periodSeconds }}
    timeoutSeconds: {{ $s.probes.liveness.timeoutSeconds }}
    failureThreshold: {{ $s.probes.liveness.failureThreshold }}
  readinessProbe:
    httpGet:
      path: /ready
      port: bloscar-admin
    periodSeconds: {{ $s.probes.readiness.periodSeconds }}
    timeoutSeconds: {{ $s.probes.readiness.timeoutSeconds }}
    failureThreshold: {{ $s.probes.readiness.failureThreshold }}
  {{- if and (gt (int $s.preStopSleepSeconds) 0) (semverCompare ">=1.30-0" .root.Capabilities.KubeVersion.Version) }}
  lifecycle:
    preStop:
      # Endpoint removal propagates while the sidecar still serves; then SIGTERM starts
      # the drain (BLOSCAR_SHUTDOWN_GRACE_SECS).
      sleep:
        seconds: {{ $s.preStopSleepSeconds }}
  {{- end }}
  resources:
    {{- toYaml $s.resources | nindent 4 }}
  {{- if or $tls.inbound $tls.outbound }}
  # The whole Secret directory, not subPath files: Kubernetes updates a mounted Secret by
  # swapping the directory, and bloscar re-reads the files for new handshakes.
  volumeMounts:
    {{- if $tls.inbound }}
    - name: bloscar-tls-inbound
      mountPath: {{ $tls.inbound }}
      readOnly: true
    {{- end }}
    {{- if $tls.outbound }}
    - name: bloscar-tls-outbound
      mountPath: {{ $tls.outbound }}
      readOnly: true
    {{- end }}
  {{- end }}
  securityContext:
    runAsNonRoot: true
    {{- if not (kindIs "invalid" $s.securityContext.runAsUser) }}
    runAsUser: {{ $s.securityContext.runAsUser }}
    {{- end }}
    {{- if not (kindIs "invalid" $s.securityContext.runAsGroup) }}
    runAsGroup: {{ $s.securityContext.runAsGroup }}
    {{- end }}
    allowPrivilegeEscalation: false
    readOnlyRootFilesystem: true
    capabilities:
      drop:
        - ALL
    seccompProfile:
      type: RuntimeDefault
{{- end }}

{{/*
Where the TLS Secrets of ROLE's sidecar are mounted, as YAML: inbound and outbound are
each a directory, or empty when that side is cleartext (or the role does not run it).
Fails on settings that cannot work.
*/}}
{{- define "bloscar.tls" -}}
{{- $t := .values.tls -}}
{{- $inbound := and (has .role (list "inbound" "both")) $t.inbound.secretName -}}
{{- $outbound := and (has .role (list "outbound" "both")) $t.outbound.secretName -}}
{{- if and $t.inbound.clientAuth (not $t.inbound.secretName) -}}
{{- fail "bloscar: tls.inbound.clientAuth needs tls.inbound.secretName (the Secret's ca.crt checks client certificates)" -}}
{{- end -}}
{{- if and $t.inbound.allowedSans (not $t.inbound.clientAuth) -}}
{{- fail "bloscar: tls.inbound.allowedSans needs tls.inbound.clientAuth" -}}
{{- end -}}
{{- if and $t.outbound.clientCert (not $t.outbound.secretName) -}}
{{- fail "bloscar: tls.outbound.clientCert needs tls.outbound.secretName" -}}
{{- end -}}
{{- if and $t.outbound.serverName (not $t.outbound.secretName) -}}
{{- fail "bloscar: tls.outbound.serverName needs tls.outbound.secretName" -}}
{{- end -}}
inbound: {{ if $inbound }}{{ printf "%s/inbound" $t.mountPath | quote }}{{ else }}""{{ end }}
outbound: {{ if $outbound }}{{ printf "%s/outbound" $t.mountPath | quote }}{{ else }}""{{ end }}
{{- end }}

{{/*
The pod volumes the sidecar's TLS Secrets need, as list items for the pod's volumes
(nothing when the hop is cleartext). Same argument as bloscar.sidecar:

  volumes:
    - name: app-data
      ...
    {{- include "bloscar.volumes" $args | nindent 4 }}
*/}}
{{- define "bloscar.volumes" -}}
{{- $v := .values | default .root.Values -}}
{{- $tls := include "bloscar.tls" (dict "values" $v "role" (.role | default "inbound")) | fromYaml -}}
{{- if $tls.inbound }}
- name: bloscar-tls-inbound
  secret:
    secretName: {{ $v.tls.inbound.secretName }}
{{- end }}
{{- if $tls.outbound }}
- name: bloscar-tls-outbound
  secret:
    secretName: {{ $v.tls.outbound.secretName }}
{{- end }}
{{- end }}

{{/* The sidecar when sidecar.type is native (for initContainers), else nothing. */}}
{{- define "bloscar.initContainers" -}}
{{- $v := .values | default .root.Values -}}
{{- if eq $v.sidecar.type "native" }}
{{- include "bloscar.sidecar" . }}
{{- end }}
{{- end }}

{{/* The sidecar when sidecar.type is classic (for containers), else nothing. */}}
{{- define "bloscar.containers" -}}
{{- $v := .values | default .root.Values -}}
{{- if eq $v.sidecar.type "classic" }}
{{- include "bloscar.sidecar" . }}
{{- end }}
{{- end }}

{{/*
terminationGracePeriodSeconds that lets the preStop delay and the drain finish:
preStopSleepSeconds + shutdownGraceSecs + 5 s of margin. A native sidecar is stopped only
after the app containers have exited, so in that mode the optional argument
appStopSeconds (the app's own preStop delay plus drain) is added as well.
*/}}
{{- define "bloscar.terminationGracePeriodSeconds" -}}
{{- $v := .values | default .root.Values -}}
{{- $seconds := add $v.sidecar.preStopSleepSeconds $v.config.shutdownGraceSecs 5 -}}
{{- if eq $v.sidecar.type "native" }}{{ $seconds = add $seconds (.appStopSeconds | default 0) }}{{ end -}}
{{- $seconds }}
{{- end }}

{{/* Prometheus scrape annotations for a pod template's metadata.annotations. */}}
{{- define "bloscar.podAnnotations" -}}
{{- $v := .values | default .root.Values -}}
{{- if $v.metrics.scrapeAnnotations -}}
prometheus.io/scrape: "true"
prometheus.io/port: {{ $v.sidecar.ports.admin | toString | quote }}
prometheus.io/path: /metrics
{{- end }}
{{- end }}

{{/* image reference: repository@digest, else repository:tag (default appVersion). */}}
{{- define "bloscar.image" -}}
{{- $v := .values | default .root.Values -}}
{{- if $v.image.digest }}
{{- printf "%s@%s" $v.image.repository $v.image.digest }}
{{- else }}
{{- $appVersion := .root.Chart.AppVersion }}
{{- with .root.Subcharts }}{{ with index . "bloscar" }}{{ $appVersion = .Chart.AppVersion }}{{ end }}{{ end }}
{{- printf "%s:%s" $v.image.repository ($v.image.tag | default $appVersion) }}
{{- end }}
{{- end }}

{{/*
A number or string value as an environment variable's text: YAML integers arrive as
float64, which would print as 6.7108864e+07; whole numbers print as integers.
*/}}
{{- define "bloscar.envNumber" -}}
{{- if and (kindIs "float64" .) (eq . (float64 (int64 .))) }}
{{- int64 . }}
{{- else }}
{{- toString . }}
{{- end }}
{{- end }}
