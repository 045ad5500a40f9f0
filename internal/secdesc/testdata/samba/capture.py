#!/usr/bin/python3
"""Capture real nTSecurityDescriptor values from a throwaway Samba AD DC.

Usage (Debian bookworm, package samba; run as root, samba's own python):

    DIR=$(mktemp -d)
    samba-tool domain provision --realm=DEMO.LOCAL --domain=DEMO --server-role=dc \
        --dns-backend=NONE --use-rfc2307 --adminpass='Passw0rd!Admin' --targetdir=$DIR \
        --option="interfaces=lo" --option="bind interfaces only=yes"
    /usr/bin/python3 capture.py $DIR > descriptors.txt
    rm -rf $DIR

It opens sam.ldb directly (no samba server), so every value below went through
Samba's own dsdb modules (descriptor, acl) exactly as an LDAP write would.
The output is read by samba_test.go.
"""
import base64
import sys

import ldb
import samba
from samba.auth import system_session
from samba.dcerpc import security
from samba.ndr import ndr_pack, ndr_unpack
from samba.param import LoadParm
from samba.samdb import SamDB

FULL = "CCDCLCSWRPWPDTLOCRSDRCWDWO"      # 0x000F01FF
NO_DELETE = "CCDCLCSWRPWPLOCRRCWDWO"     # 0x000F01FF without SD and DT
TOKEN_GROUPS = "b7c69e6d-2cc7-11d2-854e-00a0c983f608"
USER, GROUP, COMPUTER = ("bf967aba-0de6-11d0-a285-00aa003049e2",
                         "bf967a9c-0de6-11d0-a285-00aa003049e2",
                         "bf967a86-0de6-11d0-a285-00aa003049e2")

SD_FLAGS = {"all": "sd_flags:1:15", "owner-group-dacl": "sd_flags:1:7", "dacl": "sd_flags:1:4"}

target = sys.argv[1]
lp = LoadParm()
lp.load(target + "/etc/smb.conf")
db = SamDB(url=target + "/private/sam.ldb", session_info=system_session(), lp=lp)
base = str(db.get_default_basedn())
domain_sid = db.get_domain_sid()
dom = security.dom_sid(domain_sid)

# A service account, as the operator's spec.serviceAccounts would name it.
db.add({"dn": "CN=svc-dkm,CN=Users," + base, "objectClass": "user",
        "sAMAccountName": "svc-dkm", "userAccountControl": "514"})
svc_sid = str(ndr_unpack(security.dom_sid, db.search(
    base="CN=svc-dkm,CN=Users," + base, scope=ldb.SCOPE_BASE,
    attrs=["objectSid"])[0]["objectSid"][0]))

# The DKM template, written as SDDL with full SIDs (so it does not depend on
# how Samba maps aliases) and handed to Samba as a binary descriptor.
template = ("D:P"
            "(A;;%s;;;S-1-5-18)" % FULL +
            "".join("(OA;CIIO;RP;%s;%s;S-1-5-9)" % (TOKEN_GROUPS, c) for c in (USER, GROUP, COMPUTER)) +
            "(A;CI;%s;;;%s-519)" % (FULL, domain_sid) +
            "(A;CI;%s;;;%s-512)" % (FULL, domain_sid) +
            "(A;CI;%s;;;%s-500)" % (FULL, domain_sid) +
            "(A;CI;%s;;;S-1-5-32-544)" % NO_DELETE +
            "(A;CI;%s;;;%s)" % (FULL, svc_sid))
dkm = "CN=VMMDKM,CN=System," + base
db.add({"dn": dkm, "objectClass": "container",
        "nTSecurityDescriptor": ndr_pack(security.descriptor.from_sddl(template, dom))})
# Children created without a descriptor: they inherit from the template.
manager = "CN=DC Manager 5c6f0b2e-4a33-4a8e-9a57-0e0b8e0f4d21," + dkm
db.add({"dn": manager, "objectClass": "container"})
db.add({"dn": "CN=CryptoPolicy," + manager, "objectClass": "contact", "displayName": "k1"})
db.add({"dn": "CN=test-contact,CN=Users," + base, "objectClass": "contact"})

# The same template applied with a modify (SD flags 4) to an existing container.
modified = "CN=VMMDKM-modified,CN=System," + base
db.add({"dn": modified, "objectClass": "container"})
m = ldb.Message()
m.dn = ldb.Dn(db, modified)
m["nTSecurityDescriptor"] = ldb.MessageElement(
    ndr_pack(security.descriptor.from_sddl(template, dom)), ldb.FLAG_MOD_REPLACE, "nTSecurityDescriptor")
db.modify(m, controls=["sd_flags:1:4"])

captures = [
    ("domain-root", base, ["all", "owner-group-dacl", "dacl"]),
    ("system", "CN=System," + base, ["all", "dacl"]),
    ("users", "CN=Users," + base, ["all", "dacl"]),
    ("administrator", "CN=Administrator,CN=Users," + base, ["dacl"]),
    ("adminsdholder", "CN=AdminSDHolder,CN=System," + base, ["all"]),
    ("schema", "CN=Schema,CN=Configuration," + base, ["all"]),
    ("contact", "CN=test-contact,CN=Users," + base, ["all", "dacl"]),
    ("dkm-template-add", dkm, ["all", "dacl"]),
    ("dkm-template-modify", modified, ["dacl"]),
    ("dkm-manager", manager, ["dacl"]),
    ("dkm-cryptopolicy", "CN=CryptoPolicy," + manager, ["dacl"]),
]

print("# Real nTSecurityDescriptor values from a throwaway Samba %s AD DC," % samba.version)
print("# captured by capture.py (see there). Blocks are separated by blank lines.")
print("# samba-sddl is Samba's own descriptor.as_sddl(domain SID) of the same bytes.")
print("domain-sid: %s" % domain_sid)
print("service-account-sid: %s" % svc_sid)
print("template-sddl: %s" % template)
for name, dn, modes in captures:
    for mode in modes:
        res = db.search(base=dn, scope=ldb.SCOPE_BASE, attrs=["nTSecurityDescriptor"],
                        controls=[SD_FLAGS[mode]])
        raw = res[0]["nTSecurityDescriptor"][0]
        sd = ndr_unpack(security.descriptor, raw)
        assert ndr_pack(sd) == raw, "samba's own ndr does not round-trip " + dn
        print()
        print("name: %s/%s" % (name, mode))
        print("dn: %s" % dn)
        print("sd-flags: %s" % SD_FLAGS[mode].split(":")[-1])
        print("samba-sddl: %s" % sd.as_sddl(dom))
        print("base64: %s" % base64.b64encode(raw).decode())
