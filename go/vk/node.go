package main

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/virtual-kubelet/virtual-kubelet/log"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
)

// Liqo v0.10.2 names reproduced by the kit.
const (
	labelType            = "liqo.io/type"
	labelTypeVirtualNode = "virtual-node"
	labelRemoteClusterID = "liqo.io/remote-cluster-id"
	labelTepClusterID    = "clusterID"
	taintKey             = "virtual-node.liqo.io/not-allowed"
	reasonTunnelDown     = "LiqoTunnelDisconnected"
	reasonReady          = "KubeletReady"
	tunnelConnected      = "Connected"
	// capacityTimeout bounds one read of the provider's nodes.
	capacityTimeout = 5 * time.Second
)

// tunnelEndpointGVR is Liqo's TunnelEndpoint (net.liqo.io/v1alpha1).
var tunnelEndpointGVR = schema.GroupVersionResource{Group: "net.liqo.io", Version: "v1alpha1", Resource: "tunnelendpoints"}

// nodeProvider implements node.NodeProvider: API-server ping, tunnel-driven Ready, capacity.
type nodeProvider struct {
	o       *options
	foreign kubernetes.Interface
	homeDyn dynamic.Interface
	nodes   typedcorev1.NodeInterface

	mu       sync.Mutex
	node     *corev1.Node
	notify   func(*corev1.Node)
	tunnelUp bool
}

func newNodeProvider(o *options, foreign kubernetes.Interface, homeDyn dynamic.Interface, nodes typedcorev1.NodeInterface) *nodeProvider {
	return &nodeProvider{o: o, foreign: foreign, homeDyn: homeDyn, nodes: nodes, tunnelUp: !o.checkNetwork}
}

// Ping checks the provider's API server (/readyz); the library stops renewing the Lease when it fails.
func (p *nodeProvider) Ping(ctx context.Context) error {
	res := p.foreign.Discovery().RESTClient().Get().AbsPath("/readyz").Do(ctx)
	if err := res.Error(); err != nil {
		return fmt.Errorf("provider %s API server: %w", p.o.clusterID, err)
	}
	return nil
}

// NotifyNodeStatus registers the callback used to push node status changes.
func (p *nodeProvider) NotifyNodeStatus(_ context.Context, cb func(*corev1.Node)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.notify = cb
}

func (p *nodeProvider) initialNode(ctx context.Context, extra map[string]string) *corev1.Node {
	labels := map[string]string{}
	for k, v := range extra {
		labels[k] = v
	}
	labels[labelType] = labelTypeVirtualNode
	labels[labelRemoteClusterID] = p.o.clusterID
	labels["kubernetes.io/hostname"] = p.o.nodeName
	labels["kubernetes.io/os"] = "linux"
	labels["kubernetes.io/arch"] = "amd64"
	labels["kubernetes.io/role"] = "agent"
	labels["type"] = "virtual-kubelet"
	n := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: p.o.nodeName, Labels: labels},
		Status: corev1.NodeStatus{
			NodeInfo:        corev1.NodeSystemInfo{KubeletVersion: "v1.24.17-labkit-vk", OperatingSystem: "linux", Architecture: "amd64"},
			DaemonEndpoints: corev1.NodeDaemonEndpoints{KubeletEndpoint: corev1.DaemonEndpoint{Port: 10250}},
		},
	}
	if p.o.taint {
		n.Spec.Taints = []corev1.Taint{{Key: taintKey, Value: "true", Effect: corev1.TaintEffectNoExecute}}
	}
	if p.o.nodeIP != "" {
		n.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: p.o.nodeIP}}
	}
	capacity, err := p.providerCapacity(ctx)
	if err != nil {
		log.G(ctx).WithError(err).Warn("cannot read provider capacity yet; using zero")
		capacity = corev1.ResourceList{corev1.ResourcePods: resource.MustParse("0")}
	}
	n.Status.Capacity, n.Status.Allocatable = capacity, capacity.DeepCopy()
	n.Status.Conditions = p.conditions(p.tunnelUp)
	p.node = n
	return n.DeepCopy()
}

// conditions are the node conditions for the given tunnel state.
func (p *nodeProvider) conditions(tunnelUp bool) []corev1.NodeCondition {
	now := metav1.Now()
	ready := corev1.NodeCondition{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: reasonReady,
		Message: "virtual kubelet is ready", LastHeartbeatTime: now, LastTransitionTime: now}
	if !tunnelUp {
		ready.Status, ready.Reason = corev1.ConditionFalse, reasonTunnelDown
		ready.Message = fmt.Sprintf("TunnelEndpoint of %s is not %s", p.o.clusterID, tunnelConnected)
	}
	conds := []corev1.NodeCondition{ready}
	for _, t := range []corev1.NodeConditionType{corev1.NodeMemoryPressure, corev1.NodeDiskPressure, corev1.NodePIDPressure, corev1.NodeNetworkUnavailable} {
		st, reason := corev1.ConditionFalse, "Ok"
		if t == corev1.NodeNetworkUnavailable && !tunnelUp {
			st, reason = corev1.ConditionTrue, reasonTunnelDown
		}
		conds = append(conds, corev1.NodeCondition{Type: t, Status: st, Reason: reason, LastHeartbeatTime: now, LastTransitionTime: now})
	}
	return conds
}

// providerCapacity sums the allocatable resources of the provider's schedulable physical nodes.
func (p *nodeProvider) providerCapacity(ctx context.Context) (corev1.ResourceList, error) {
	nodes, err := p.foreign.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: labelType + "!=" + labelTypeVirtualNode})
	if err != nil {
		return nil, err
	}
	total := corev1.ResourceList{}
	for _, n := range nodes.Items {
		if n.Spec.Unschedulable {
			continue
		}
		for _, name := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory, corev1.ResourcePods, corev1.ResourceEphemeralStorage} {
			q, ok := n.Status.Allocatable[name]
			if !ok {
				continue
			}
			sum := total[name]
			sum.Add(q)
			total[name] = sum
		}
	}
	return total, nil
}

// run watches the peering's TunnelEndpoint and refreshes the capacity until ctx ends.
// The two are independent: a capacity read that hangs on an unreachable provider must not
// delay the tunnel state, which is what marks the node NotReady in that very case.
func (p *nodeProvider) run(ctx context.Context) {
	go p.refreshCapacity(ctx)
	if p.o.checkNetwork {
		watchObjects(ctx, p.homeDyn, tunnelEndpointGVR, p.o.tenantNamespace, labelTepClusterID+"="+p.o.clusterID,
			p.o.reflectionResync, func(items []*unstructured.Unstructured) { p.setTunnel(ctx, tunnelConnectedIn(items)) })
	}
}

// every calls fn each interval (the first time one interval from now) until ctx ends.
func every(ctx context.Context, interval time.Duration, fn func()) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			fn()
		}
	}
}

// refreshCapacity reads the provider's capacity every capacityInterval (each read bounded by
// capacityTimeout) and pushes it to the node when it changed.
func (p *nodeProvider) refreshCapacity(ctx context.Context) {
	every(ctx, p.o.capacityInterval, func() {
		cctx, cancel := context.WithTimeout(ctx, capacityTimeout)
		c, err := p.providerCapacity(cctx)
		cancel()
		if err != nil {
			log.G(ctx).WithError(err).Debug("cannot read the provider's capacity")
			return
		}
		p.update(func(n *corev1.Node) bool {
			if resourceListEqual(n.Status.Capacity, c) {
				return false
			}
			n.Status.Capacity, n.Status.Allocatable = c, c.DeepCopy()
			return true
		})
	})
}

// tunnelConnectedIn says whether one of the peering's TunnelEndpoints reads Connected.
func tunnelConnectedIn(items []*unstructured.Unstructured) bool {
	for _, item := range items {
		st, _, _ := unstructured.NestedString(item.Object, "status", "connection", "status")
		if st == tunnelConnected {
			return true
		}
	}
	return false
}

func (p *nodeProvider) setTunnel(ctx context.Context, up bool) {
	p.mu.Lock()
	changed := p.tunnelUp != up
	p.tunnelUp = up
	p.mu.Unlock()
	if !changed {
		return
	}
	log.G(ctx).Infof("tunnel to %s connected=%v: setting Ready=%v", p.o.clusterID, up, up)
	conds := p.conditions(up)
	p.update(func(n *corev1.Node) bool {
		n.Status.Conditions = conds
		return true
	})
	// The library refuses status updates while the API-server ping fails (the usual case when
	// the provider's link is down), so the conditions are also patched directly.
	p.patchConditions(ctx, conds)
}

func (p *nodeProvider) patchConditions(ctx context.Context, conds []corev1.NodeCondition) {
	body, err := json.Marshal(map[string]interface{}{"status": map[string]interface{}{"conditions": conds}})
	if err != nil {
		return
	}
	for attempt := 0; attempt < 5; attempt++ {
		cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		_, err = p.nodes.Patch(cctx, p.o.nodeName, types.StrategicMergePatchType, body, metav1.PatchOptions{}, "status")
		cancel()
		if err == nil {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	log.G(ctx).WithError(err).Error("cannot patch the virtual node's conditions")
}

// update applies change to the node and pushes it to the library when something changed.
func (p *nodeProvider) update(change func(*corev1.Node) bool) {
	p.mu.Lock()
	if p.node == nil || !change(p.node) {
		p.mu.Unlock()
		return
	}
	n, cb := p.node.DeepCopy(), p.notify
	p.mu.Unlock()
	if cb != nil {
		cb(n)
	}
}

func resourceListEqual(a, b corev1.ResourceList) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		w, ok := b[k]
		if !ok || v.Cmp(w) != 0 {
			return false
		}
	}
	return true
}
