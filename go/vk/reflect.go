package main

import (
	"context"
	"time"

	"github.com/virtual-kubelet/virtual-kubelet/log"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// reflectors copy Services, EndpointSlices, ConfigMaps and Secrets of offloaded namespaces
// into the provider's mapped namespaces, and delete them there when they go away at home.
type reflectors struct {
	foreign kubernetes.Interface
	offl    *offloadingTracker
	o       *options
	kinds   []*reflector
}

// reflector handles one kind: upsert writes the provider copy, remove deletes it.
type reflector struct {
	kind     string
	informer cache.SharedIndexInformer
	upsert   func(ctx context.Context, obj metav1.Object, remote string) error
	remove   func(ctx context.Context, name, remote string) error
}

func newReflectors(f informers.SharedInformerFactory, foreign kubernetes.Interface, offl *offloadingTracker, o *options) *reflectors {
	r := &reflectors{foreign: foreign, offl: offl, o: o}
	r.kinds = []*reflector{
		{kind: "ConfigMap", informer: f.Core().V1().ConfigMaps().Informer(), upsert: r.configMap, remove: func(ctx context.Context, n, ns string) error {
			return foreign.CoreV1().ConfigMaps(ns).Delete(ctx, n, metav1.DeleteOptions{})
		}},
		{kind: "Secret", informer: f.Core().V1().Secrets().Informer(), upsert: r.secret, remove: func(ctx context.Context, n, ns string) error {
			return foreign.CoreV1().Secrets(ns).Delete(ctx, n, metav1.DeleteOptions{})
		}},
		{kind: "Service", informer: f.Core().V1().Services().Informer(), upsert: r.service, remove: func(ctx context.Context, n, ns string) error {
			return foreign.CoreV1().Services(ns).Delete(ctx, n, metav1.DeleteOptions{})
		}},
		{kind: "EndpointSlice", informer: f.Discovery().V1().EndpointSlices().Informer(), upsert: r.endpointSlice, remove: func(ctx context.Context, n, ns string) error {
			return foreign.DiscoveryV1().EndpointSlices(ns).Delete(ctx, n, metav1.DeleteOptions{})
		}},
	}
	return r
}

func (r *reflectors) run(ctx context.Context) {
	r.offl.OnNewNamespace(func(ns string) { r.resyncNamespace(ctx, ns) })
	<-r.offl.synced
	for _, k := range r.kinds {
		k := k
		_, _ = k.informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc:    func(obj interface{}) { r.apply(ctx, k, obj) },
			UpdateFunc: func(_, obj interface{}) { r.apply(ctx, k, obj) },
			DeleteFunc: func(obj interface{}) { r.delete(ctx, k, obj) },
		})
	}
	// The informers' resync re-applies every object, so namespaces offloaded later are filled.
	<-ctx.Done()
}

// resyncNamespace reflects every cached object of a namespace that has just been offloaded.
func (r *reflectors) resyncNamespace(ctx context.Context, ns string) {
	for _, k := range r.kinds {
		objs, err := k.informer.GetIndexer().ByIndex(cache.NamespaceIndex, ns)
		if err != nil {
			continue
		}
		for _, obj := range objs {
			r.apply(ctx, k, obj)
		}
	}
}

// target is the object to reflect and its namespace in the provider; ok is false when obj is
// not reflected (not an object, its namespace not offloaded, or a kind the provider keeps its own of).
func (r *reflectors) target(k *reflector, obj interface{}) (m metav1.Object, remote string, ok bool) {
	if m, ok = obj.(metav1.Object); !ok {
		return nil, "", false
	}
	remote, offloaded := r.offl.remote(m.GetNamespace())
	if !offloaded || skipReflection(k.kind, obj) {
		return nil, "", false
	}
	return m, remote, true
}

func (r *reflectors) apply(ctx context.Context, k *reflector, obj interface{}) {
	m, remote, ok := r.target(k, obj)
	if !ok {
		return
	}
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := k.upsert(cctx, m, remote); err != nil {
		log.G(ctx).WithError(err).Debugf("reflecting %s %s/%s", k.kind, m.GetNamespace(), m.GetName())
	}
}

func (r *reflectors) delete(ctx context.Context, k *reflector, obj interface{}) {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	m, remote, ok := r.target(k, obj)
	if !ok {
		return
	}
	if err := k.remove(ctx, m.GetName(), remote); err != nil && !apierrors.IsNotFound(err) {
		log.G(ctx).WithError(err).Debugf("deleting reflected %s %s/%s", k.kind, remote, m.GetName())
	}
}

// skipReflection keeps objects the provider has its own of at home.
func skipReflection(kind string, obj interface{}) bool {
	switch o := obj.(type) {
	case *corev1.ConfigMap:
		return o.Name == "kube-root-ca.crt"
	case *corev1.Secret:
		return o.Type == corev1.SecretTypeServiceAccountToken
	}
	return false
}

func (r *reflectors) meta(m metav1.Object, remote string) metav1.ObjectMeta {
	labels := map[string]string{}
	for k, v := range m.GetLabels() {
		labels[k] = v
	}
	labels[labelOrigin] = r.o.homeClusterID
	labels[labelDestination] = r.o.clusterID
	labels[labelManagedBy] = managedByRefl
	return metav1.ObjectMeta{Name: m.GetName(), Namespace: remote, Labels: labels, Annotations: m.GetAnnotations()}
}

func (r *reflectors) configMap(ctx context.Context, m metav1.Object, remote string) error {
	home := m.(*corev1.ConfigMap)
	want := &corev1.ConfigMap{ObjectMeta: r.meta(m, remote), Data: home.Data, BinaryData: home.BinaryData}
	api := r.foreign.CoreV1().ConfigMaps(remote)
	return upsert(ctx, api, want, nil)
}

func (r *reflectors) secret(ctx context.Context, m metav1.Object, remote string) error {
	home := m.(*corev1.Secret)
	want := &corev1.Secret{ObjectMeta: r.meta(m, remote), Type: home.Type, Data: home.Data}
	api := r.foreign.CoreV1().Secrets(remote)
	return upsert(ctx, api, want, nil)
}

// service reflects a Service without selector: the reflected EndpointSlices fill it.
func (r *reflectors) service(ctx context.Context, m metav1.Object, remote string) error {
	home := m.(*corev1.Service)
	if home.Spec.Type == corev1.ServiceTypeExternalName {
		return nil
	}
	ports := make([]corev1.ServicePort, 0, len(home.Spec.Ports))
	for _, p := range home.Spec.Ports {
		p.NodePort = 0
		ports = append(ports, p)
	}
	want := &corev1.Service{ObjectMeta: r.meta(m, remote), Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeClusterIP, Ports: ports,
		PublishNotReadyAddresses: home.Spec.PublishNotReadyAddresses}}
	if home.Spec.ClusterIP == corev1.ClusterIPNone {
		want.Spec.ClusterIP = corev1.ClusterIPNone
	}
	api := r.foreign.CoreV1().Services(remote)
	// the provider allocated the ClusterIP, which is immutable: keep it on update
	return upsert(ctx, api, want, func(cur *corev1.Service) {
		want.Spec.ClusterIP, want.Spec.ClusterIPs = cur.Spec.ClusterIP, cur.Spec.ClusterIPs
	})
}

// providerView is the address the provider reaches a home endpoint at: an offloaded pod's
// remapped address goes back to the provider's own, a home pod's to its remapped address.
func (r *reflectors) providerView(addr string) string {
	if back, ok := r.o.remoteRemap.reverse().apply(addr); ok {
		return back
	}
	out, _ := r.o.localRemap.apply(addr)
	return out
}

// endpointSlice reflects a home EndpointSlice; its addresses are home or reflected pod IPs.
func (r *reflectors) endpointSlice(ctx context.Context, m metav1.Object, remote string) error {
	home := m.(*discoveryv1.EndpointSlice)
	meta := r.meta(m, remote)
	meta.Labels[discoveryv1.LabelManagedBy] = "endpointslice.reflection.liqo.io"
	eps := make([]discoveryv1.Endpoint, 0, len(home.Endpoints))
	for _, e := range home.Endpoints {
		addrs := make([]string, 0, len(e.Addresses))
		for _, a := range e.Addresses {
			addrs = append(addrs, r.providerView(a))
		}
		eps = append(eps, discoveryv1.Endpoint{Addresses: addrs, Conditions: e.Conditions, Hostname: e.Hostname})
	}
	want := &discoveryv1.EndpointSlice{ObjectMeta: meta, AddressType: home.AddressType, Endpoints: eps, Ports: home.Ports}
	api := r.foreign.DiscoveryV1().EndpointSlices(remote)
	return upsert(ctx, api, want, nil)
}

// objectAPI is the part of a typed client-go client that upsert needs.
type objectAPI[T metav1.Object] interface {
	Get(ctx context.Context, name string, opts metav1.GetOptions) (T, error)
	Create(ctx context.Context, obj T, opts metav1.CreateOptions) (T, error)
	Update(ctx context.Context, obj T, opts metav1.UpdateOptions) (T, error)
}

// upsert creates want in the provider, or updates the existing object to it; keep copies
// fields of the current object that must survive the update (nil: none).
func upsert[T metav1.Object](ctx context.Context, api objectAPI[T], want T, keep func(cur T)) error {
	cur, err := api.Get(ctx, want.GetName(), metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		_, err = api.Create(ctx, want, metav1.CreateOptions{})
		return err
	} else if err != nil {
		return err
	}
	want.SetResourceVersion(cur.GetResourceVersion())
	if keep != nil {
		keep(cur)
	}
	_, err = api.Update(ctx, want, metav1.UpdateOptions{})
	return err
}
