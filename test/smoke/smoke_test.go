package smoke

import (
	"context"
	"errors"

	"github.com/go-ldap/ldap/v3"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

var _ = Describe("kube-apiserver and etcd", func() {
	It("install a CRD and round-trip an object through it", func(ctx context.Context) {
		w := &unstructured.Unstructured{}
		w.SetAPIVersion("smoke.dkm.io/v1")
		w.SetKind("Widget")
		w.SetNamespace("default")
		w.SetName("w1")
		Expect(unstructured.SetNestedField(w.Object, int64(3), "spec", "size")).To(Succeed())
		Expect(k8sClient.Create(ctx, w)).To(Succeed())

		got := &unstructured.Unstructured{}
		got.SetAPIVersion("smoke.dkm.io/v1")
		got.SetKind("Widget")
		Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(w), got)).To(Succeed())
		size, _, _ := unstructured.NestedInt64(got.Object, "spec", "size")
		Expect(size).To(Equal(int64(3)))
	})

	It("enforce the CRD's schema", func(ctx context.Context) {
		w := &unstructured.Unstructured{}
		w.SetAPIVersion("smoke.dkm.io/v1")
		w.SetKind("Widget")
		w.SetNamespace("default")
		w.SetName("w0")
		Expect(unstructured.SetNestedField(w.Object, int64(0), "spec", "size")).To(Succeed())
		err := k8sClient.Create(ctx, w)
		Expect(apierrors.IsInvalid(err)).To(BeTrue(), "got %v", err)
	})
})

var _ = Describe("Samba AD DC", func() {
	It("answers an LDAPS simple bind as Administrator with the domain's objectSid", func() {
		conn, err := dc.Dial()
		Expect(err).NotTo(HaveOccurred())
		defer conn.Close()
		res, err := conn.Search(ldap.NewSearchRequest(dc.BaseDN, ldap.ScopeBaseObject, ldap.NeverDerefAliases,
			1, 10, false, "(objectClass=domain)", []string{"objectSid"}, nil))
		Expect(err).NotTo(HaveOccurred())
		Expect(res.Entries).To(HaveLen(1))
		Expect(res.Entries[0].GetRawAttributeValue("objectSid")).To(HaveLen(24), "a domain SID has 4 sub-authorities")
		Expect(dc.DomainSID).To(MatchRegexp(`^S-1-5-21-\d+-\d+-\d+$`))
	})

	It("refuses a wrong password with invalid credentials", func() {
		_, err := dc.DialAs(dc.AdminUser, "wrong-password")
		var lerr *ldap.Error
		Expect(errors.As(err, &lerr)).To(BeTrue(), "got %v", err)
		Expect(lerr.ResultCode).To(Equal(uint16(ldap.LDAPResultInvalidCredentials)))
	})
})
