package main

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/virtual-kubelet/virtual-kubelet/errdefs"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// Labels the reflection puts on provider objects (Liqo-style names).
const (
	labelOrigin      = "virtualkubelet.liqo.io/origin"
	labelDestination = "virtualkubelet.liqo.io/destination"
	labelShadowPod   = "virtualkubelet.liqo.io/shadow-pod"
	labelManagedBy   = "liqo.io/managed-by"
	managedByShadow  = "shadowpod"
	managedByRefl    = "reflection"
)

// podProvider implements node.PodLifecycleHandler by reflecting each pod as a ShadowPod.
//
// The ShadowPod is a ReplicaSet of one in the provider's mapped namespace: the provider's
// own kube-controller-manager recreates the pod whenever it disappears, also while the
// consumer is unreachable, which is the ShadowPod guarantee of Liqo. Pods whose
// restartPolicy is not Always (which a ReplicaSet cannot hold) are reflected as plain pods.
type podProvider struct {
	foreign kubernetes.Interface
	offl    *offloadingTracker
	o       *options
}

func newPodProvider(foreign kubernetes.Interface, offl *offloadingTracker, o *options) *podProvider {
	return &podProvider{foreign: foreign, offl: offl, o: o}
}

func (p *podProvider) remoteNamespace(ns string) (string, error) {
	remote, ok := p.offl.remote(ns)
	if !ok {
		return "", errdefs.InvalidInputf("namespace %s is not offloaded to %s", ns, p.o.clusterID)
	}
	return remote, nil
}

// CreatePod creates the ShadowPod of pod in the provider.
func (p *podProvider) CreatePod(ctx context.Context, pod *corev1.Pod) error {
	remote, err := p.remoteNamespace(pod.Namespace)
	if err != nil {
		return err
	}
	template := p.shadowTemplate(pod)
	if pod.Spec.RestartPolicy != "" && pod.Spec.RestartPolicy != corev1.RestartPolicyAlways {
		bare := &corev1.Pod{ObjectMeta: template.ObjectMeta, Spec: template.Spec}
		bare.Name = pod.Name
		_, err = p.foreign.CoreV1().Pods(remote).Create(ctx, bare, metav1.CreateOptions{})
	} else {
		one := int32(1)
		rs := &appsv1.ReplicaSet{
			ObjectMeta: metav1.ObjectMeta{Name: pod.Name, Namespace: remote, Labels: p.ownLabels(pod, managedByShadow),
				Annotations: map[string]string{"virtualkubelet.liqo.io/origin-namespace": pod.Namespace}},
			Spec: appsv1.ReplicaSetSpec{Replicas: &one,
				Selector: &metav1.LabelSelector{MatchLabels: map[string]string{labelShadowPod: pod.Name, labelOrigin: p.o.homeClusterID}},
				Template: template},
		}
		_, err = p.foreign.AppsV1().ReplicaSets(remote).Create(ctx, rs, metav1.CreateOptions{})
	}
	if apierrors.IsAlreadyExists(err) {
		return nil
	}
	return err
}

func (p *podProvider) ownLabels(pod *corev1.Pod, managedBy string) map[string]string {
	return map[string]string{labelOrigin: p.o.homeClusterID, labelDestination: p.o.clusterID,
		labelManagedBy: managedBy, labelShadowPod: pod.Name}
}

// shadowTemplate is the pod template of the ShadowPod: the home pod without what binds it
// to the home cluster (node, virtual-node affinity and toleration, service-account token).
func (p *podProvider) shadowTemplate(pod *corev1.Pod) corev1.PodTemplateSpec {
	spec := pod.Spec.DeepCopy()
	spec.NodeName, spec.NodeSelector, spec.Affinity = "", nil, nil
	spec.ServiceAccountName, spec.DeprecatedServiceAccount = "", ""
	no := false
	spec.AutomountServiceAccountToken = &no
	spec.Priority, spec.PriorityClassName, spec.PreemptionPolicy = nil, "", nil
	spec.Tolerations = keepTolerations(spec.Tolerations)
	spec.Volumes = keepVolumes(spec.Volumes)
	for i := range spec.Containers {
		spec.Containers[i].VolumeMounts = keepMounts(spec.Containers[i].VolumeMounts, spec.Volumes)
	}
	for i := range spec.InitContainers {
		spec.InitContainers[i].VolumeMounts = keepMounts(spec.InitContainers[i].VolumeMounts, spec.Volumes)
	}
	if spec.RestartPolicy == "" {
		spec.RestartPolicy = corev1.RestartPolicyAlways
	}
	labels := map[string]string{}
	for k, v := range pod.Labels {
		labels[k] = v
	}
	for k, v := range p.ownLabels(pod, managedByShadow) {
		labels[k] = v
	}
	annotations := map[string]string{}
	for k, v := range pod.Annotations {
		if !strings.HasPrefix(k, "kubernetes.io/") {
			annotations[k] = v
		}
	}
	return corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels, Annotations: annotations}, Spec: *spec}
}

func keepTolerations(in []corev1.Toleration) []corev1.Toleration {
	var out []corev1.Toleration
	for _, t := range in {
		if t.Key != taintKey && !strings.HasPrefix(t.Key, "node.kubernetes.io/") {
			out = append(out, t)
		}
	}
	return out
}

func keepVolumes(in []corev1.Volume) []corev1.Volume {
	var out []corev1.Volume
	for _, v := range in {
		if v.Projected != nil && strings.HasPrefix(v.Name, "kube-api-access-") {
			continue
		}
		out = append(out, v)
	}
	return out
}

func keepMounts(in []corev1.VolumeMount, volumes []corev1.Volume) []corev1.VolumeMount {
	names := map[string]bool{}
	for _, v := range volumes {
		names[v.Name] = true
	}
	var out []corev1.VolumeMount
	for _, m := range in {
		if names[m.Name] {
			out = append(out, m)
		}
	}
	return out
}

// UpdatePod is a no-op: a pod's spec is immutable, and labels are not reflected back.
func (p *podProvider) UpdatePod(context.Context, *corev1.Pod) error { return nil }

// DeletePod deletes the ShadowPod (and with it the provider's pod).
func (p *podProvider) DeletePod(ctx context.Context, pod *corev1.Pod) error {
	remote, err := p.remoteNamespace(pod.Namespace)
	if err != nil {
		return nil // nothing was ever reflected
	}
	bg := metav1.DeletePropagationBackground
	opts := metav1.DeleteOptions{PropagationPolicy: &bg}
	err = p.foreign.AppsV1().ReplicaSets(remote).Delete(ctx, pod.Name, opts)
	if apierrors.IsNotFound(err) {
		err = p.foreign.CoreV1().Pods(remote).Delete(ctx, pod.Name, opts)
	}
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}

// remotePods lists the provider pods of the ShadowPod of home pod ns/name, best first.
func (p *podProvider) remotePods(ctx context.Context, remote, name string) ([]corev1.Pod, error) {
	list, err := p.foreign.CoreV1().Pods(remote).List(ctx, metav1.ListOptions{
		LabelSelector: fmt.Sprintf("%s=%s,%s=%s", labelShadowPod, name, labelOrigin, p.o.homeClusterID)})
	if err != nil {
		return nil, err
	}
	pods := list.Items
	sort.SliceStable(pods, func(i, j int) bool { return podRank(&pods[i]) > podRank(&pods[j]) })
	return pods, nil
}

// podRank prefers pods that are not being deleted, then running, then the newest.
func podRank(p *corev1.Pod) int64 {
	var r int64
	if p.DeletionTimestamp == nil {
		r += 4 << 40
	}
	if p.Status.Phase == corev1.PodRunning {
		r += 2 << 40
	}
	return r + p.CreationTimestamp.Unix()
}

// GetPodStatus returns the status of the provider pod (phase, conditions, IPs, restarts).
func (p *podProvider) GetPodStatus(ctx context.Context, namespace, name string) (*corev1.PodStatus, error) {
	remote, err := p.remoteNamespace(namespace)
	if err != nil {
		return nil, errdefs.NotFound(err.Error())
	}
	pods, err := p.remotePods(ctx, remote, name)
	if err != nil {
		return nil, err
	}
	if len(pods) == 0 {
		if _, err := p.foreign.AppsV1().ReplicaSets(remote).Get(ctx, name, metav1.GetOptions{}); err == nil {
			return &corev1.PodStatus{Phase: corev1.PodPending, Reason: "ShadowPodRecreating",
				Message: "the provider is recreating the pod"}, nil
		} else if !apierrors.IsNotFound(err) {
			return nil, err
		}
		return nil, errdefs.NotFoundf("no ShadowPod of %s/%s in %s", namespace, name, p.o.clusterID)
	}
	st := pods[0].Status.DeepCopy()
	st.HostIP = p.o.nodeIP
	// The consumer reaches the provider's pods at their remapped addresses.
	st.PodIP, _ = p.o.remoteRemap.apply(st.PodIP)
	for i := range st.PodIPs {
		st.PodIPs[i].IP, _ = p.o.remoteRemap.apply(st.PodIPs[i].IP)
	}
	return st, nil
}

// GetPod returns the home view of the reflected pod, nil-error NotFound when not reflected.
func (p *podProvider) GetPod(ctx context.Context, namespace, name string) (*corev1.Pod, error) {
	remote, err := p.remoteNamespace(namespace)
	if err != nil {
		return nil, errdefs.NotFound(err.Error())
	}
	_, err = p.foreign.AppsV1().ReplicaSets(remote).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		_, err = p.foreign.CoreV1().Pods(remote).Get(ctx, name, metav1.GetOptions{})
	}
	if apierrors.IsNotFound(err) {
		return nil, errdefs.NotFoundf("pod %s/%s not reflected", namespace, name)
	}
	if err != nil {
		return nil, err
	}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name}}
	if st, err := p.GetPodStatus(ctx, namespace, name); err == nil {
		pod.Status = *st
	}
	return pod, nil
}

// GetPods lists the reflected pods (home names) in every namespace offloaded here.
func (p *podProvider) GetPods(ctx context.Context) ([]*corev1.Pod, error) {
	var out []*corev1.Pod
	for home, remote := range p.offl.snapshot() {
		list, err := p.foreign.AppsV1().ReplicaSets(remote).List(ctx, metav1.ListOptions{
			LabelSelector: labelOrigin + "=" + p.o.homeClusterID})
		if err != nil {
			return nil, err
		}
		for _, rs := range list.Items {
			out = append(out, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: home, Name: rs.Name}})
		}
	}
	return out, nil
}
