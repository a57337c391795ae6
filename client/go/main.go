// Command canary-client is an example Go client of canaryserve, built on stubs generated
// from protos/ (client/go/gen, see generate.sh).
//
//	canary-client -target 127.0.0.1:8001 -token TOKEN [-model classifier]
//	              [-key user-1 -key user-2 ...] [-input 0.1,0.2,0.3,0.4] [-timeout 10s]
//	canary-client conformance [-vectors protos/routing_vectors.json]
//
// The first form calls ServerLive, ServerReady, ModelMetadata, ModelInfer (raw FP32 [1,4],
// one call per routing key, the key in `x-routing-key` metadata) and the admin service's
// ListRollouts and Route (with `authorization: Bearer TOKEN`), and prints one JSON object.
// The second checks client/go/routing against every routing test vector. Both exit 0 on
// success and non-zero on any failure (the error goes to stderr).
package main

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	adminv1 "canaryserve/client/go/gen/admin/v1"
	"canaryserve/client/go/gen/inference"
	"canaryserve/client/go/routing"
)

const (
	routingKeyHeader = "x-routing-key"
	maxMessageBytes  = 64 * 1024 * 1024
)

var defaultKeys = []string{"user-1", "user-2", "user-3", "user-4", "user-5", "user-6", "user-7", "user-8"}

type keyList []string

func (k *keyList) String() string     { return strings.Join(*k, ",") }
func (k *keyList) Set(v string) error { *k = append(*k, v); return nil }

type tensorMeta struct {
	Name     string  `json:"name"`
	Datatype string  `json:"datatype"`
	Shape    []int64 `json:"shape"`
}

type modelMeta struct {
	Name     string       `json:"name"`
	Versions []string     `json:"versions"`
	Platform string       `json:"platform"`
	Inputs   []tensorMeta `json:"inputs"`
	Outputs  []tensorMeta `json:"outputs"`
}

type tensor struct {
	Datatype string    `json:"datatype"`
	Shape    []int64   `json:"shape"`
	Data     []float32 `json:"data"`
}

type inferResult struct {
	Key          string            `json:"key"`
	ModelName    string            `json:"model_name"`
	ModelVersion string            `json:"model_version"`
	Stage        string            `json:"stage"`
	RouteReason  string            `json:"route_reason"`
	Outputs      map[string]tensor `json:"outputs"`
}

type rollout struct {
	Model            string  `json:"model"`
	StableVersion    string  `json:"stable_version"`
	CandidateVersion string  `json:"candidate_version"`
	Phase            string  `json:"phase"`
	CanaryWeightPPM  uint32  `json:"canary_weight_ppm"`
	ShadowRatePPM    uint32  `json:"shadow_rate_ppm"`
	Paused           bool    `json:"paused"`
	Revision         int64   `json:"revision"`
	RolloutID        int64   `json:"rollout_id"`
	Automatic        bool    `json:"automatic"`
	UpdatedAt        *string `json:"updated_at"`
}

type routeResult struct {
	Key           string  `json:"key"`
	Version       string  `json:"version"`
	Stage         string  `json:"stage"`
	Reason        string  `json:"reason"`
	Position      float64 `json:"position"`
	ShadowVersion string  `json:"shadow_version"`
}

type result struct {
	Client   string        `json:"client"`
	Target   string        `json:"target"`
	Model    string        `json:"model"`
	Input    []float32     `json:"input"`
	Live     bool          `json:"live"`
	Ready    bool          `json:"ready"`
	Metadata modelMeta     `json:"metadata"`
	Infer    []inferResult `json:"infer"`
	Rollouts []rollout     `json:"rollouts"`
	Route    []routeResult `json:"route"`
}

type options struct {
	target, token, model string
	keys                 []string
	input                []float32
	timeout              time.Duration
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "conformance" {
		return conformance(args[1:], stdout, stderr)
	}
	opts, err := parseFlags(args, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintln(stderr, err)
		return 2
	}
	res, err := callServer(opts)
	if err != nil {
		fmt.Fprintf(stderr, "canary-client: %v\n", err)
		return 1
	}
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(res); err != nil {
		fmt.Fprintf(stderr, "canary-client: %v\n", err)
		return 1
	}
	return 0
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	fs := flag.NewFlagSet("canary-client", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var keys keyList
	target := fs.String("target", "", "server address HOST:PORT (required)")
	token := fs.String("token", "", "admin bearer token (required)")
	model := fs.String("model", "classifier", "model to call")
	input := fs.String("input", "0.1,0.2,0.3,0.4", "the FP32 [1,4] input, comma-separated")
	timeout := fs.Duration("timeout", 10*time.Second, "deadline of each call")
	fs.Var(&keys, "key", "a routing key (repeatable; default user-1 … user-8)")
	if err := fs.Parse(args); err != nil {
		return options{}, err
	}
	if fs.NArg() > 0 {
		return options{}, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	if *target == "" || *token == "" {
		return options{}, errors.New("-target and -token are required")
	}
	if *timeout <= 0 {
		return options{}, errors.New("-timeout must be positive")
	}
	var values []float32
	for _, s := range strings.Split(*input, ",") {
		f, err := strconv.ParseFloat(strings.TrimSpace(s), 32)
		if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
			return options{}, fmt.Errorf("-input: %q is not a finite number", s)
		}
		values = append(values, float32(f))
	}
	if len(values) != 4 {
		return options{}, fmt.Errorf("-input needs 4 numbers (an FP32 [1,4] tensor), got %d", len(values))
	}
	if len(keys) == 0 {
		keys = defaultKeys
	}
	return options{target: *target, token: *token, model: *model, keys: keys, input: values, timeout: *timeout}, nil
}

// encodeFP32 is the little-endian wire form of raw_input_contents.
func encodeFP32(values []float32) []byte {
	raw := make([]byte, 4*len(values))
	for i, v := range values {
		binary.LittleEndian.PutUint32(raw[4*i:], math.Float32bits(v))
	}
	return raw
}

// decodeFP32 reads raw_output_contents as little-endian FP32, whatever the host order.
func decodeFP32(raw []byte) ([]float32, error) {
	if len(raw)%4 != 0 {
		return nil, fmt.Errorf("FP32 output of %d bytes is not a multiple of 4", len(raw))
	}
	out := make([]float32, len(raw)/4)
	for i := range out {
		out[i] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:]))
	}
	return out, nil
}

func paramString(p *inference.InferParameter) (string, bool) {
	if p == nil {
		return "", false
	}
	v, ok := p.GetParameterChoice().(*inference.InferParameter_StringParam)
	if !ok {
		return "", false
	}
	return v.StringParam, true
}

func describe(method string, err error) error {
	if s, ok := status.FromError(err); ok {
		return fmt.Errorf("%s failed: %s: %s", method, s.Code(), s.Message())
	}
	return fmt.Errorf("%s failed: %w", method, err)
}

func callServer(opts options) (*result, error) {
	conn, err := grpc.Dial(opts.target,
		grpc.WithInsecure(),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxMessageBytes), grpc.MaxCallSendMsgSize(maxMessageBytes)),
	)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", opts.target, err)
	}
	defer conn.Close()
	infer := inference.NewGRPCInferenceServiceClient(conn)
	admin := adminv1.NewAdminServiceClient(conn)

	withDeadline := func(md ...string) (context.Context, context.CancelFunc) {
		ctx, cancel := context.WithTimeout(context.Background(), opts.timeout)
		if len(md) > 0 {
			ctx = metadata.AppendToOutgoingContext(ctx, md...)
		}
		return ctx, cancel
	}
	res := &result{Client: "go", Target: opts.target, Model: opts.model, Input: opts.input}

	ctx, cancel := withDeadline()
	live, err := infer.ServerLive(ctx, &inference.ServerLiveRequest{})
	cancel()
	if err != nil {
		return nil, describe("ServerLive", err)
	}
	ctx, cancel = withDeadline()
	ready, err := infer.ServerReady(ctx, &inference.ServerReadyRequest{})
	cancel()
	if err != nil {
		return nil, describe("ServerReady", err)
	}
	res.Live, res.Ready = live.GetLive(), ready.GetReady()
	if !res.Live || !res.Ready {
		return nil, fmt.Errorf("server not live/ready (live=%v, ready=%v)", res.Live, res.Ready)
	}

	ctx, cancel = withDeadline()
	meta, err := infer.ModelMetadata(ctx, &inference.ModelMetadataRequest{Name: opts.model})
	cancel()
	if err != nil {
		return nil, describe("ModelMetadata", err)
	}
	tensors := func(ts []*inference.ModelMetadataResponse_TensorMetadata) []tensorMeta {
		out := make([]tensorMeta, 0, len(ts))
		for _, t := range ts {
			out = append(out, tensorMeta{Name: t.GetName(), Datatype: t.GetDatatype(), Shape: t.GetShape()})
		}
		return out
	}
	res.Metadata = modelMeta{
		Name: meta.GetName(), Versions: meta.GetVersions(), Platform: meta.GetPlatform(),
		Inputs: tensors(meta.GetInputs()), Outputs: tensors(meta.GetOutputs()),
	}
	if len(res.Metadata.Inputs) != 1 {
		return nil, fmt.Errorf("expected one input, got %d", len(res.Metadata.Inputs))
	}
	inputName := res.Metadata.Inputs[0].Name

	for _, key := range opts.keys {
		request := &inference.ModelInferRequest{
			ModelName: opts.model,
			Inputs: []*inference.ModelInferRequest_InferInputTensor{
				{Name: inputName, Datatype: "FP32", Shape: []int64{1, int64(len(opts.input))}},
			},
			RawInputContents: [][]byte{encodeFP32(opts.input)},
		}
		ctx, cancel = withDeadline(routingKeyHeader, key)
		response, err := infer.ModelInfer(ctx, request)
		cancel()
		if err != nil {
			return nil, describe("ModelInfer", err)
		}
		if len(response.GetRawOutputContents()) != len(response.GetOutputs()) {
			return nil, errors.New("ModelInfer: expected raw_output_contents for every output")
		}
		outputs := map[string]tensor{}
		for i, out := range response.GetOutputs() {
			if out.GetDatatype() != "FP32" {
				return nil, fmt.Errorf("output %s: datatype %s, expected FP32", out.GetName(), out.GetDatatype())
			}
			data, err := decodeFP32(response.GetRawOutputContents()[i])
			if err != nil {
				return nil, fmt.Errorf("output %s: %w", out.GetName(), err)
			}
			outputs[out.GetName()] = tensor{Datatype: out.GetDatatype(), Shape: out.GetShape(), Data: data}
		}
		stage, ok1 := paramString(response.GetParameters()["stage"])
		reason, ok2 := paramString(response.GetParameters()["route_reason"])
		if !ok1 || !ok2 {
			return nil, fmt.Errorf("ModelInfer for key %s: response lacks stage/route_reason parameters", key)
		}
		res.Infer = append(res.Infer, inferResult{
			Key: key, ModelName: response.GetModelName(), ModelVersion: response.GetModelVersion(),
			Stage: stage, RouteReason: reason, Outputs: outputs,
		})
	}

	ctx, cancel = withDeadline("authorization", "Bearer "+opts.token)
	list, err := admin.ListRollouts(ctx, &adminv1.ListRolloutsRequest{})
	cancel()
	if err != nil {
		return nil, describe("ListRollouts", err)
	}
	res.Rollouts = []rollout{}
	for _, r := range list.GetRollouts() {
		var updated *string
		if ts := r.GetUpdatedAt(); ts != nil {
			s := ts.AsTime().UTC().Format("2006-01-02T15:04:05.000Z")
			updated = &s
		}
		res.Rollouts = append(res.Rollouts, rollout{
			Model: r.GetModel(), StableVersion: r.GetStableVersion(), CandidateVersion: r.GetCandidateVersion(),
			Phase: r.GetPhase().String(), CanaryWeightPPM: r.GetCanaryWeightPpm(), ShadowRatePPM: r.GetShadowRatePpm(),
			Paused: r.GetPaused(), Revision: r.GetRevision(), RolloutID: r.GetRolloutId(),
			Automatic: r.GetAutomatic(), UpdatedAt: updated,
		})
	}

	for _, key := range opts.keys {
		ctx, cancel = withDeadline("authorization", "Bearer "+opts.token)
		r, err := admin.Route(ctx, &adminv1.RouteRequest{Model: opts.model, RoutingKey: key})
		cancel()
		if err != nil {
			return nil, describe("Route", err)
		}
		res.Route = append(res.Route, routeResult{
			Key: key, Version: r.GetVersion(), Stage: r.GetStage(), Reason: r.GetReason(),
			Position: r.GetPosition(), ShadowVersion: r.GetShadowVersion(),
		})
	}
	return res, nil
}

// findVectors looks for protos/routing_vectors.json above the working directory and above
// the executable.
func findVectors() (string, error) {
	var starts []string
	if wd, err := os.Getwd(); err == nil {
		starts = append(starts, wd)
	}
	if exe, err := os.Executable(); err == nil {
		starts = append(starts, filepath.Dir(exe))
	}
	for _, dir := range starts {
		for {
			candidate := filepath.Join(dir, "protos", "routing_vectors.json")
			if _, err := os.Stat(candidate); err == nil {
				return candidate, nil
			}
			parent := filepath.Dir(dir)
			if parent == dir {
				break
			}
			dir = parent
		}
	}
	return "", errors.New("protos/routing_vectors.json not found above the working directory; pass -vectors")
}

func conformance(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("canary-client conformance", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("vectors", "", "routing_vectors.json (default: protos/routing_vectors.json found above the working directory)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if *path == "" {
		found, err := findVectors()
		if err != nil {
			fmt.Fprintln(stderr, err)
			return 2
		}
		*path = found
	}
	checked, failures, err := routing.CheckFile(*path)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	for _, f := range failures {
		fmt.Fprintln(stderr, f)
	}
	fmt.Fprintf(stdout, "go routing conformance: %d vectors checked, %d mismatches\n", checked, len(failures))
	if len(failures) > 0 {
		return 1
	}
	return 0
}
