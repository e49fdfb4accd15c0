"""Drives a running Berth with the unmodified `c8y-api` client (module `c8y_api`) over HTTPS:
users, groups, roles, options (credentials.* included), tenants, applications and upload,
subscriptions, the bootstrap user, currentApplication/*, audit, Basic and OAI-Secure (token)
logins, paging through every collection, the microservice helpers configured from C8Y_*
variables, and the proxy. Started by `platform/tests/it/clients.rs`, which sets the variables
read below; prints `N passed, N failed` last."""

import itertools
import os
import sys
from datetime import datetime, timedelta, timezone
from urllib.parse import urlparse

import requests

from c8y_api import CumulocityApi, CumulocityRestApi, HTTPBearerAuth
from c8y_api._jwt import JWT
from c8y_api.app import MultiTenantCumulocityApp, SimpleCumulocityApp
from c8y_api.model import (
    Application,
    AuditRecord,
    GlobalRole,
    Tenant,
    TenantOption,
    User,
)

from checks import Checks, env, unique

BASE = env("BERTH_HTTPS")
T = env("T_ID")
T_PASSWORD = env("T_PASSWORD")
MGMT_PASSWORD = env("MGMT_PASSWORD")
APP_ID = env("APP_ID")
APP_NAME = env("APP_NAME")
PACKAGE_ZIP = env("PACKAGE_ZIP")

mgmt = CumulocityApi(BASE, "management", "admin", MGMT_PASSWORD)
admin = CumulocityApi(BASE, T, "boss", T_PASSWORD)
checks = Checks("c8y-api")
PASSWORD = "Compat-Passw0rd-9"


def distinct_ids(items):
    ids = [str(x.id) for x in items]
    assert len(ids) == len(set(ids)), f"a page repeated items: {ids}"
    return ids


def users():
    prefix = unique("cu")
    for i in range(5):
        User(admin, username=f"{prefix}{i}", email=f"{prefix}{i}@example.com", password=PASSWORD).create()
    found = list(admin.users.select(username=prefix, page_size=2))
    assert sorted(u.username for u in found) == [f"{prefix}{i}" for i in range(5)], found
    user = admin.users.get(f"{prefix}0")
    user.first_name = "Ada"
    user.update()
    assert admin.users.get(f"{prefix}0").first_name == "Ada"
    for i in range(5):
        admin.users.get(f"{prefix}{i}").delete()
    assert not list(admin.users.select(username=prefix))


def groups_and_roles():
    name = unique("cg")
    group = GlobalRole(admin, name=name, description="compat").create()
    group.add_permissions("ROLE_AUDIT_READ", "ROLE_OPTION_MANAGEMENT_READ")
    username = unique("cr")
    User(admin, username=username, email=f"{username}@example.com", password=PASSWORD).create()
    group.add_users(username)
    user = admin.users.get(username)
    # Paged reference collection: this looped for ever when every page was the same.
    roles = user.retrieve_global_roles()
    assert [g.name for g in roles] == [name], roles
    permissions = admin.global_roles.get(group.id).permission_ids
    assert {"ROLE_AUDIT_READ", "ROLE_OPTION_MANAGEMENT_READ"} <= set(permissions), permissions
    group.remove_permissions("ROLE_AUDIT_READ")
    assert "ROLE_AUDIT_READ" not in admin.global_roles.get(group.id).permission_ids
    # A directly assigned role, through the user resource.
    admin.post(f"/user/{T}/users/{username}/roles", {"role": {"self": "user/roles/ROLE_EVENT_READ"}})
    direct = admin.get(f"/user/{T}/users/{username}/roles", params={"pageSize": 1, "currentPage": 1})
    assert [r["role"]["id"] for r in direct["references"]] == ["ROLE_EVENT_READ"], direct
    group.remove_users(username)
    assert admin.users.get(username).retrieve_global_roles() == []
    admin.users.get(username).delete()
    group.delete()


def options():
    category = unique("compat")
    TenantOption(admin, category=category, key="a", value="1").create()
    admin.tenant_options.set_value(category, "b", "2")
    admin.tenant_options.update_by(category, {"a": "10", "c": "3"})
    assert admin.tenant_options.get_all_mapped(category) == {"a": "10", "b": "2", "c": "3"}
    assert admin.tenant_options.get_value(category, "a") == "10"
    assert len(distinct_ids_of_options(admin.tenant_options.select(category=category, page_size=1))) == 3
    # credentials.* values are sealed: never given back in clear to a tenant admin.
    admin.tenant_options.set_value(category, "credentials.secret", "hunter22")
    assert admin.tenant_options.get_value(category, "credentials.secret") != "hunter22"
    for key in ("a", "b", "c", "credentials.secret"):
        admin.tenant_options.delete_by(category, key)
    assert admin.tenant_options.get_all_mapped(category) == {}


def distinct_ids_of_options(options):
    keys = [f"{o.category}/{o.key}" for o in options]
    assert len(keys) == len(set(keys)), keys
    return keys


def tenants():
    company = unique("Compat Co ")
    domain = f"{unique('compat')}.example.com"
    created = Tenant(mgmt, domain=domain, company=company, admin_name="chief",
                     admin_pass="Chief-Passw0rd-1", admin_email="chief@example.com").create()
    found = list(mgmt.tenants.select(company=company))
    assert [t.id for t in found] == [created.id], found
    assert [t.id for t in mgmt.tenants.select(domain=domain)] == [created.id]
    tenant = mgmt.tenants.get(created.id)
    tenant.company = company + " renamed"
    tenant.update()
    assert mgmt.tenants.get(created.id).company == company + " renamed"
    assert mgmt.tenants.get_current().id == "management"
    mgmt.tenants.get(created.id).delete()
    assert not list(mgmt.tenants.select(company=company + " renamed"))


def applications_and_upload():
    name = unique("compat-app-")
    app = Application(admin, name=name, key=f"{name}-key", type="MICROSERVICE").create()
    admin.applications.upload_attachment(app.id, PACKAGE_ZIP)
    uploaded = admin.applications.get(app.id)
    assert uploaded.manifest and uploaded.manifest.get("version") == "1.0.0", uploaded.manifest
    assert [a.id for a in admin.applications.select(name=name)] == [app.id]
    assert app.id in [a.id for a in admin.applications.select(owner=T)]
    # (Applications.get() returns an object without the connection, so delete by path.)
    admin.delete(f"/application/applications/{app.id}")
    assert not list(admin.applications.select(name=name))


def subscriptions_and_filters():
    # A MARKET application of the management tenant, subscribed by the tenant: filters naming
    # the tenant (subscriber, tenant, providedFor) and the tenant's references show it.
    name = unique("compat-ext-")
    ext = Application.from_json(mgmt.post("/application/applications", {
        "name": name, "key": f"{name}-key", "type": "EXTERNAL", "availability": "MARKET",
        "externalUrl": "https://example.com"}, accept="application/json"))
    # Offered to every tenant: select(name=…) without a tenant filter finds it from the
    # subtenant, as on Cumulocity (the tenant's own applications come first).
    assert [a.id for a in admin.applications.select(name=name)] == [ext.id]
    mgmt.post(f"/tenant/tenants/{T}/applications", {"application": {"self": f"{BASE}/application/applications/{ext.id}"}})
    for query in ({"subscriber": T}, {"tenant": T}, {"providedFor": T}):
        ids = [a.id for a in admin.applications.select(**{k.replace("providedFor", "provided_for"): v for k, v in query.items()})]
        assert ext.id in ids, (query, ids)
    assert ext.id in [a.id for a in mgmt.applications.select(subscriber=T)]
    current = admin.tenants.get_current()
    assert ext.id in [a.id for a in current.all_applications], "currentTenant applications.references"
    assert APP_ID in [a.id for a in mgmt.tenants.get(T).all_owned_applications]
    by_tenant = admin.get(f"/application/applicationsByTenant/{T}", params={"pageSize": 100})
    assert {ext.id, APP_ID} <= {a["id"] for a in by_tenant["applications"]}
    by_owner = admin.get(f"/application/applicationsByOwner/{T}", params={"pageSize": 100})
    assert APP_ID in [a["id"] for a in by_owner["applications"]] and ext.id not in [a["id"] for a in by_owner["applications"]]
    by_user = admin.get("/application/applicationsByUser/boss", params={"pageSize": 100})
    assert ext.id in [a["id"] for a in by_user["applications"]]
    mgmt.delete(f"/tenant/tenants/{T}/applications/{ext.id}")
    assert ext.id not in [a.id for a in admin.applications.select(subscriber=T)]
    mgmt.delete(f"/application/applications/{ext.id}")


def bootstrap_and_current_application():
    boot = admin.get(f"/application/applications/{APP_ID}/bootstrapUser")
    service = CumulocityApi(BASE, boot["tenant"], boot["name"], boot["password"])
    assert service.applications.get_current().name == APP_NAME
    settings = {s.key: s for s in service.applications.get_current_settings()}
    assert settings["greeting"].default_value == "Hello", vars(settings["greeting"])
    assert settings["greeting"].editable is True
    assert "credentials.token" in settings
    subscribers = [s.tenant_id for s in service.applications.get_current_subscriptions()]
    assert T in subscribers, subscribers


def audit():
    since = datetime.now(timezone.utc) - timedelta(minutes=1)
    record = AuditRecord(admin, type="CompatCheck", time="now", source=APP_ID,
                         activity="Checked", text="compatibility suite").create()
    assert record.id and record.user == "boss" and record.application == APP_NAME, vars(record)
    mine = list(admin.audit_records.select(type="CompatCheck", user="boss", after=since))
    assert record.id in [r.id for r in mine], mine
    by_name = list(admin.audit_records.select(application=APP_NAME, type="CompatCheck"))
    assert record.id in [r.id for r in by_name]
    assert not list(admin.audit_records.select(type="CompatCheck", before=since))
    # Changes to users leave records (type User), naming the plain user.
    username = unique("ca")
    User(admin, username=username, email=f"{username}@example.com", password=PASSWORD).create()
    admin.users.get(username).delete()
    texts = [r.text for r in admin.audit_records.select(type="User", user="boss", after=since)]
    assert any(username in t and "created" in t for t in texts), texts
    assert any(username in t and "deleted" in t for t in texts), texts


def token_login():
    token, xsrf = CumulocityRestApi.authenticate(BASE, T, "boss", T_PASSWORD)
    jwt = JWT(token)
    assert jwt.tenant_id == T and jwt.username == "boss"
    # Token-only clients take the platform's address from `aud`, prefixing https:// when
    # urlparse finds no scheme (pyc8y's rule: real tokens carry a bare host on port 443).
    aud = jwt.get_claim("aud")
    base = aud if urlparse(aud).scheme else "https://" + aud
    assert base == BASE, base
    api = CumulocityApi(base, jwt.tenant_id, auth=HTTPBearerAuth(token))
    assert api.users.get_current().username == "boss"
    assert api.users.get_tfa_settings("boss").enabled is False
    # Logging all users of the tenant out ends the token, not Basic.
    admin.users.logout_all()
    try:
        api.users.get_current()
    except Exception:  # noqa: BLE001 - the client raises its own 401 error type
        pass
    else:
        raise AssertionError("the token still works after logout of all users")
    assert admin.users.get_current().username == "boss"


def paging_every_collection():
    # Every collection walked one item per page must end and never repeat an item.
    distinct_ids(list(admin.users.select(page_size=1, limit=50)))
    distinct_ids(list(itertools.islice(admin.global_roles.select(page_size=1), 50)))
    distinct_ids(list(admin.applications.select(page_size=1, limit=50)))
    distinct_ids(list(mgmt.tenants.select(page_size=1, limit=50)))
    distinct_ids(list(admin.audit_records.select(page_size=1, limit=20)))
    distinct_ids_of_options(admin.tenant_options.select(page_size=1, limit=50))
    group = admin.get(f"/user/{T}/users/boss/groups")["references"][0]["group"]["id"]
    for path, key in ((f"/user/{T}/users/boss/groups", "references"),
                      (f"/user/{T}/groups/{group}/roles", "references"),
                      ("/user/roles", "roles"),
                      (f"/tenant/tenants/{T}/applications", "references")):
        seen, page = [], 1
        while True:
            body = admin.get(path, params={"pageSize": 1, "currentPage": page}) if not path.startswith("/tenant/tenants") \
                else mgmt.get(path, params={"pageSize": 1, "currentPage": page})
            items = body[key]
            if not items:
                break
            seen.append(str(items[0]))
            page += 1
            assert page < 500, f"{path} never ends"
        assert len(seen) == len(set(seen)), f"{path} repeated items"
        assert seen, f"{path} is empty"


def microservice_helpers():
    boot = admin.get(f"/application/applications/{APP_ID}/bootstrapUser")
    saved = dict(os.environ)
    try:
        os.environ.update({
            "C8Y_BASEURL": BASE,
            "C8Y_BOOTSTRAP_TENANT": boot["tenant"],
            "C8Y_BOOTSTRAP_USER": boot["name"],
            "C8Y_BOOTSTRAP_PASSWORD": boot["password"],
        })
        multi = MultiTenantCumulocityApp()
        assert T in multi.get_subscribers()
        assert multi.get_tenant_instance(T).tenants.get_current().id == T
        # A caller sending a bare user name (the Host choosing the tenant, as the `microservice`
        # script does) reaches the service as `tenant/user`, which the SDK needs to find the
        # tenant (it raises for a name without one) and to act as that user.
        host = f"{mgmt.tenants.get(T).domain}:{urlparse(BASE).port}"
        seen = requests.get(f"{BASE}/service/{APP_NAME}/headers", auth=("boss", T_PASSWORD),
                            headers={"Host": host}, timeout=30).json()["headers"]
        forwarded = {"Authorization": seen["authorization"]}
        assert multi.get_tenant_instance(headers=forwarded).tenants.get_current().id == T
        assert multi.get_user_instance(headers=forwarded).users.get_current().username == "boss"
        service = [s for s in multi.bootstrap_instance.applications.get_current_subscriptions() if s.tenant_id == T][0]
        os.environ.update({"C8Y_TENANT": T, "C8Y_USER": service.username, "C8Y_PASSWORD": service.password})
        simple = SimpleCumulocityApp()
        assert simple.tenants.get_current().id == T
        assert simple.users.get_current().username == service.username
    finally:
        os.environ.clear()
        os.environ.update(saved)


def proxy():
    answer = admin.get(f"/service/{APP_NAME}/hello")
    assert "boss" in answer["message"] and T in answer["message"], answer


for check in (users, groups_and_roles, options, tenants, applications_and_upload,
              subscriptions_and_filters, bootstrap_and_current_application, audit,
              paging_every_collection, microservice_helpers, proxy, token_login):
    checks.run(check.__name__, check)
sys.exit(checks.finish())
