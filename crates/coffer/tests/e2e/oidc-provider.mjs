// An OpenID provider for Coffer's sign-in tests, on loopback only (oidc-provider, a certified
// implementation). Users: alice (group archive-admins), bob (group archive-readers); any password.
// Clients: `coffer-console` (client secret) and, when COFFER_CERT_PEM names Coffer's certificate,
// `coffer-console-cert` (private_key_jwt: the assertion must verify against that certificate).
import fs from 'node:fs';
import crypto from 'node:crypto';
import Provider from 'oidc-provider';

const port = Number(process.env.PORT);
const redirect = process.env.REDIRECT_URI;
const people = {
  alice: { sub: 'alice', email: 'alice@contoso.com', email_verified: true, name: 'Alice Admin', groups: ['archive-admins'] },
  bob: { sub: 'bob', email: 'bob@contoso.com', email_verified: true, name: 'Bob User', groups: ['archive-readers'] },
};
const clients = [{
  client_id: 'coffer-console',
  client_secret: 'coffer-console-secret',
  redirect_uris: [redirect],
  response_types: ['code'],
  grant_types: ['authorization_code'],
  token_endpoint_auth_method: 'client_secret_basic',
}];
if (process.env.COFFER_CERT_PEM) {
  const jwk = crypto.createPublicKey(fs.readFileSync(process.env.COFFER_CERT_PEM)).export({ format: 'jwk' });
  clients.push({
    client_id: 'coffer-console-cert',
    redirect_uris: [redirect],
    response_types: ['code'],
    grant_types: ['authorization_code'],
    token_endpoint_auth_method: 'private_key_jwt',
    jwks: { keys: [jwk] },
  });
}
const provider = new Provider(`http://127.0.0.1:${port}`, {
  clients,
  pkce: { required: () => true },
  claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['name'], groups: ['groups'] },
  scopes: ['openid', 'email', 'profile', 'groups'],
  features: { devInteractions: { enabled: true } },
  async findAccount(ctx, id) {
    const person = people[id] || { sub: id, email: `${id}@contoso.com`, email_verified: true, name: id, groups: [] };
    return { accountId: id, async claims() { return person; } };
  },
});
provider.listen(port, '127.0.0.1', () => console.log(`oidc-provider listening on ${port}`));
