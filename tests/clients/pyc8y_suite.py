"""Drives a running Berth with the unmodified `pyc8y` client (asyncio, aiohttp) over Berth's
plain-HTTP listener: pyc8y builds its TLS context from certifi's bundle only, so it cannot be
told to trust a test certificate (the c8y-api suite covers HTTPS). Users, groups, roles,
options (credentials.* included), tenants, applications and upload, subscriptions, the
bootstrap user, currentApplication/*, audit, Basic and OAI-Secure (token-only, from
C8Y_TOKEN) logins, paging through every collection, the microservice helpers configured from
C8Y_* variables, and the proxy. Prints `N passed, N failed` last."""

import asyncio
import os
import sys
from datetime import datetime, timedelta, timezone

from pyc8y import CumulocityClient
from pyc8y.app import MultiTenantCumulocityApp, SimpleCumulocityApp, get_client
from pyc8y.auth import JWT, BasicAuth
from pyc8y.model.application import Application
from pyc8y.model.audit import AuditRecord
from pyc8y.model.tenant_option import TenantOption
from pyc8y.model.tenants import Tenant
from pyc8y.model.user import User, UserGroup

from checks import Checks, env, unique

BASE = env("BERTH_HTTP")
T = env("T_ID")
T_PASSWORD = env("T_PASSWORD")
MGMT_PASSWORD = env("MGMT_PASSWORD")
APP_ID = env("APP_ID")
APP_NAME = env("APP_NAME")
PACKAGE_ZIP = env("PACKAGE_ZIP")
PASSWORD = "Compat-Passw0rd-9"

checks = Checks("pyc8y")
mgmt = CumulocityClient(BASE, "management", BasicAuth("management/admin", MGMT_PASSWORD))
admin = CumulocityClient(BASE, T, BasicAuth(f"{T}/boss", T_PASSWORD))


async def collect(iterator):
    return [x async for x in iterator]


def no_repeats(values):
    values = [str(v) for v in values]
    assert len(values) == len(set(values)), f"a page repeated items: {values}"
    return values


async def users():
    prefix = unique("pu")
    await admin.users.create(*[User(admin, username=f"{prefix}{i}", email=f"{prefix}{i}@example.com",
                                    password=PASSWORD) for i in range(5)])
    found = await collect(admin.users.select(username=prefix, page_size=2, limit=None))
    assert sorted(u.username for u in found) == [f"{prefix}{i}" for i in range(5)], found
    user = await admin.users.get(f"{prefix}0")
    user.first_name = "Ada"
    await user.update()
    assert (await admin.users.get(f"{prefix}0")).first_name == "Ada"
    await admin.users.delete(*[f"{prefix}{i}" for i in range(5)])
    assert not await collect(admin.users.select(username=prefix, limit=None))
    # Without a password pyc8y asks for Cumulocity's invitation e-mail (sendPasswordResetEmail),
    # which Berth cannot send: refused, saying so, and no user made.
    name = f"{prefix}x"
    try:
        await admin.users.create(User(admin, username=name, email=f"{name}@example.com"))
    except ValueError as refused:
        assert "422" in str(refused) and "sends no e-mail" in str(refused), refused
    else:
        raise AssertionError("a user without a password was created")
    assert not await collect(admin.users.select(username=name, limit=None))


async def groups_and_roles():
    group = await UserGroup(admin, name=unique("pg")).create()
    await group.assign_roles("ROLE_AUDIT_READ", "ROLE_OPTION_MANAGEMENT_READ")
    username = unique("pr")
    await User(admin, username=username, email=f"{username}@example.com", password=PASSWORD).create()
    await group.assign_users(username)
    user = await admin.users.get(username)
    groups = await user.retrieve_global_roles()
    assert [g.name for g in groups] == [group.name], [g.name for g in groups]
    reloaded = await admin.user_groups.get(group.id)
    assert {"ROLE_AUDIT_READ", "ROLE_OPTION_MANAGEMENT_READ"} <= set(reloaded.role_ids), reloaded.role_ids
    await group.unassign_roles("ROLE_AUDIT_READ")
    assert "ROLE_AUDIT_READ" not in (await admin.user_groups.get(group.id)).role_ids
    await group.unassign_users(username)
    assert await (await admin.users.get(username)).retrieve_global_roles() == []
    await admin.users.delete(username)
    await group.delete()


async def options():
    category = unique("pcompat")
    await TenantOption(admin, category=category, key="a", value="1").create()
    await admin.tenant_options.set_value(category, "b", "2")
    await admin.tenant_options.update_values(category, {"a": "10", "c": "3"})
    assert await admin.tenant_options.get_values(category) == {"a": "10", "b": "2", "c": "3"}
    assert await admin.tenant_options.get_value(category, "a") == "10"
    walked = await collect(admin.tenant_options.select(page_size=1, limit=None))
    no_repeats(f"{o.category}/{o.key}" for o in walked)
    await TenantOption(admin, category=category, key="secret", value="hunter22", encrypted=True).create()
    assert await admin.tenant_options.get_value(category, "credentials.secret") != "hunter22"
    for key in ("a", "b", "c", "credentials.secret"):
        await (await admin.tenant_options.get(category, key)).delete()
    assert await admin.tenant_options.get_values(category) == {}


async def tenants():
    company = unique("PCompat Co ")
    domain = f"{unique('pcompat')}.example.com"
    tenant = Tenant(mgmt, domain=domain, company=company, admin_name="chief",
                    admin_pass="Chief-Passw0rd-1", admin_email="chief@example.com")
    created = await tenant.create()
    found = await collect(mgmt.tenants.select(company=company, limit=None))
    assert [t.id for t in found] == [created.id], found
    assert [t.id for t in await collect(mgmt.tenants.select(domain=domain, limit=None))] == [created.id]
    assert (await mgmt.tenants.get_current()).id == "management"
    fetched = await mgmt.tenants.get(T)
    assert APP_ID in [a.id for a in fetched.owned_applications], "ownedApplications.references"
    await mgmt.tenants.delete(created.id)
    assert not await collect(mgmt.tenants.select(company=company, limit=None))


async def applications_and_upload():
    name = unique("pcompat-app-")
    app = await Application(admin, name=name, key=f"{name}-key", type="MICROSERVICE").create()
    await admin.applications.upload_attachment(app.id, PACKAGE_ZIP)
    uploaded = await admin.applications.get(app.id)
    assert uploaded.get("manifest.version") == "1.0.0", uploaded.get("manifest")
    assert [a.id for a in await collect(admin.applications.select(name=name, limit=None))] == [app.id]
    owned = await collect(admin.applications.select(owner=T, limit=None))
    assert app.id in [a.id for a in owned]
    await admin.applications.delete(app.id)


async def subscriptions_and_filters():
    name = unique("pcompat-ext-")
    ext = Application.from_json(await mgmt.post("/application/applications", json={
        "name": name, "key": f"{name}-key", "type": "EXTERNAL", "availability": "MARKET",
        "externalUrl": "https://example.com"}))
    # Offered to every tenant: select(name=…) without a tenant filter finds it from the subtenant.
    assert [a.id for a in await collect(admin.applications.select(name=name, limit=None))] == [ext.id]
    await mgmt.post(f"/tenant/tenants/{T}/applications", json={"application": {"id": ext.id}})
    for query in ({"subscriber": T}, {"tenant": T}, {"provided_for": T}):
        ids = [a.id for a in await collect(admin.applications.select(limit=None, **query))]
        assert ext.id in ids, (query, ids)
    current = await admin.tenants.get_current()
    assert ext.id in [a.id for a in current.applications], "currentTenant applications.references"
    await mgmt.delete(f"/tenant/tenants/{T}/applications/{ext.id}")
    ids = [a.id for a in await collect(admin.applications.select(subscriber=T, limit=None))]
    assert ext.id not in ids
    await mgmt.applications.delete(ext.id)


async def bootstrap_and_current_application():
    boot = await admin.get(f"/application/applications/{APP_ID}/bootstrapUser")
    service = CumulocityClient(BASE, boot["tenant"], BasicAuth(f"{boot['tenant']}/{boot['name']}", boot["password"]))
    try:
        assert (await service.applications.get_current()).name == APP_NAME
        settings = await service.applications.get_current_settings()
        assert settings.get("greeting") == "Hello", settings
        assert settings.get("token") == "s3cret", "the service reads its own credentials setting"
        subscribers = [s.tenant_id for s in await service.applications.get_current_subscriptions()]
        assert T in subscribers, subscribers
    finally:
        await service.close()


async def audit():
    since = datetime.now(timezone.utc) - timedelta(minutes=1)
    record = await AuditRecord(admin, type="PCompatCheck", time="now", source=APP_ID,
                               activity="Checked", text="compatibility suite").create()
    assert record.id and record.user == "boss", record.to_json()
    mine = await collect(admin.audit_records.select(type="PCompatCheck", user="boss", date_from=since, limit=None))
    assert record.id in [r.id for r in mine], mine
    by_name = await collect(admin.audit_records.select(application=APP_NAME, type="PCompatCheck", limit=None))
    assert record.id in [r.id for r in by_name]
    category = unique("paudit")
    await admin.tenant_options.set_value(category, "k", "v")
    records = await collect(admin.audit_records.select(type="Option", date_from=since, limit=None))
    assert any(category in r.text for r in records), [r.text for r in records]


async def token_only():
    auth, _ = await CumulocityClient.authenticate(BASE, T, "boss", T_PASSWORD)
    saved = dict(os.environ)
    try:
        for name in ("C8Y_BASEURL", "C8Y_TENANT", "C8Y_USER", "C8Y_PASSWORD"):
            os.environ.pop(name, None)
        os.environ["C8Y_TOKEN"] = auth.token
        # Base URL, tenant and user all come from the token's claims.
        client = await get_client()
        try:
            assert JWT(auth.token).get_claim("aud") == BASE
            assert (await client.users.get_current()).username == "boss"
            assert (await client.users.get_tfa_settings("boss")).enabled is False
        finally:
            await client.close()
    finally:
        os.environ.clear()
        os.environ.update(saved)


async def paging_every_collection():
    no_repeats(u.username for u in await collect(admin.users.select(page_size=1, limit=50)))
    no_repeats(g.id for g in await collect(admin.user_groups.select(page_size=1, limit=50)))
    no_repeats(a.id for a in await collect(admin.applications.select(page_size=1, limit=50)))
    no_repeats(t.id for t in await collect(mgmt.tenants.select(page_size=1, limit=50)))
    no_repeats(r.id for r in await collect(admin.audit_records.select(page_size=1, limit=20)))


async def microservice_helpers():
    boot = await admin.get(f"/application/applications/{APP_ID}/bootstrapUser")
    saved = dict(os.environ)
    try:
        os.environ.update({
            "C8Y_BASEURL": BASE,
            "C8Y_BOOTSTRAP_TENANT": boot["tenant"],
            "C8Y_BOOTSTRAP_USER": boot["name"],
            "C8Y_BOOTSTRAP_PASSWORD": boot["password"],
        })
        multi = MultiTenantCumulocityApp()
        try:
            assert T in await multi.get_subscribers()
            tenant_client = await multi.get_tenant_instance(T)
            assert (await tenant_client.tenants.get_current()).id == T
            subscriptions = await multi.bootstrap_instance.applications.get_current_subscriptions()
            service = [s for s in subscriptions if s.tenant_id == T][0]
        finally:
            await multi.close()
        os.environ.update({"C8Y_TENANT": T, "C8Y_USER": service.username, "C8Y_PASSWORD": service.password})
        simple = SimpleCumulocityApp()
        try:
            assert (await simple.tenants.get_current()).id == T
        finally:
            await simple.close()
    finally:
        os.environ.clear()
        os.environ.update(saved)


async def proxy():
    answer = await admin.get(f"/service/{APP_NAME}/hello")
    assert "boss" in answer["message"] and T in answer["message"], answer


async def main():
    for check in (users, groups_and_roles, options, tenants, applications_and_upload,
                  subscriptions_and_filters, bootstrap_and_current_application, audit,
                  paging_every_collection, microservice_helpers, proxy, token_only):
        await checks.run_async(check.__name__, check)
    await admin.close()
    await mgmt.close()
    return checks.finish()


sys.exit(asyncio.run(main()))
