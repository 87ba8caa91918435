package registry

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/dtr-registry/dtr/images"
)

// Tracing is off unless Options.OTLPEndpoint names an OTLP/HTTP collector.
// Then every request gets a span (named by its route, never by repository),
// and Distribution's own spans (storage driver calls) nest under it: it
// traces through OpenTelemetry's global provider, which this sets.

// otlpTracesURL checks the collector URL and adds OTLP's traces path when
// the URL has none.
func otlpTracesURL(endpoint string) (string, error) {
	u, err := url.Parse(endpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("OTLP endpoint %q: give the collector's http(s) URL, e.g. http://otel-collector:4318 (check --otlp-endpoint)", endpoint)
	}
	if u.Path == "" || u.Path == "/" {
		u.Path = "/v1/traces"
	}
	return u.String(), nil
}

// startTracing installs the OTLP exporter; the returned function flushes
// and stops it.
func startTracing(ctx context.Context, endpoint, replicaID string) (func(context.Context) error, error) {
	target, err := otlpTracesURL(endpoint)
	if err != nil {
		return nil, err
	}
	exp, err := otlptracehttp.New(ctx, otlptracehttp.WithEndpointURL(target), otlptracehttp.WithTimeout(10*time.Second))
	if err != nil {
		return nil, fmt.Errorf("OTLP exporter: %w", err)
	}
	res := resource.NewWithAttributes("",
		attribute.String("service.name", "dtr-registry"),
		attribute.String("service.version", images.Version),
		attribute.String("service.instance.id", replicaID),
	)
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	otel.SetTracerProvider(tp)
	otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))
	return tp.Shutdown, nil
}

// traced wraps the replica's handler in request spans when tracing is on.
func (r *Replica) traced(h http.Handler) http.Handler {
	if r.opts.OTLPEndpoint == "" {
		return h
	}
	return otelhttp.NewHandler(h, "dtr",
		otelhttp.WithSpanNameFormatter(func(_ string, req *http.Request) string { return req.Method + " " + routeOf(req.URL.Path) }))
}
