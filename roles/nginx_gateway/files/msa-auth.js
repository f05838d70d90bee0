// msa.platform API gateway: checks a Keycloak access token (a JWT signed with RS256) for
// auth_request. Installed by the nginx_gateway role; not templated.
//
// The internal location that calls verify() sets, with `set`:
//   $msa_jwt_realm         realm name (the WWW-Authenticate realm)
//   $msa_jwt_issuer        the exact `iss` expected
//   $msa_jwt_audience      a value `aud` must hold
//   $msa_jwt_roles         roles of which the caller needs one (space-separated; empty: none needed)
//   $msa_jwt_leeway        clock skew allowed on exp and nbf, in seconds
//   $msa_jwt_keys          internal URI of the realm's keys (cached for minutes)
//   $msa_jwt_keys_fresh    internal URI of the realm's keys (cached for seconds), asked only
//                          when a token names a key the first answer lacks (key rotation)
//
// Answer: 204 with the caller in X-Msa-Auth-Subject, -Username, -Roles; or 401/403 with
// X-Msa-Auth-Status (401, 403, or 503 when the keys cannot be had), X-Msa-Auth-Reason (a
// fixed text, safe in JSON) and X-Msa-Auth-Challenge (the WWW-Authenticate value). auth_request
// only passes 2xx, 401 and 403 on, so 503 travels as a 401 and the gateway turns it back.
//
// Written for njs 0.7.9 (Debian 12) and later: no JWK import there, so each RSA key is
// wrapped into a SubjectPublicKeyInfo (DER) and imported as 'spki'. The token itself is
// never logged.

// AlgorithmIdentifier: rsaEncryption (1.2.840.113549.1.1.1), NULL parameters.
var RSA_ALGORITHM_ID = Buffer.from('300d06092a864886f70d0101010500', 'hex');
// Claims passed on in headers may not hold control characters (no header injection).
var CONTROL = /[\u0000-\u001f\u007f]/;

function Rejection(status, reason) {
    this.status = status;
    this.reason = reason;
}

function invalid(reason) {
    return new Rejection(401, reason);
}

function derLength(length) {
    var bytes = [];
    if (length < 0x80) {
        return [length];
    }
    while (length > 0) {
        bytes.unshift(length & 0xff);
        length = length >> 8;
    }
    bytes.unshift(0x80 | bytes.length);
    return bytes;
}

function der(tag, content) {
    return Buffer.concat([Buffer.from([tag].concat(derLength(content.length))), content]);
}

function derInteger(unsigned) {
    var start = 0;
    while (start < unsigned.length - 1 && unsigned[start] === 0) {
        start++;
    }
    var value = unsigned.slice(start);
    if (value[0] & 0x80) {
        value = Buffer.concat([Buffer.from([0]), value]);
    }
    return der(0x02, value);
}

// SubjectPublicKeyInfo of an RSA public key: SEQUENCE { rsaEncryption, BIT STRING { RSAPublicKey } }.
function rsaSpki(n, e) {
    var rsaPublicKey = der(0x30, Buffer.concat([derInteger(n), derInteger(e)]));
    var bitString = der(0x03, Buffer.concat([Buffer.from([0]), rsaPublicKey]));
    return der(0x30, Buffer.concat([RSA_ALGORITHM_ID, bitString]));
}

function base64url(text) {
    return Buffer.from(text, 'base64url');
}

function decodeJson(text) {
    var value = JSON.parse(base64url(text).toString());
    if (value === null || typeof value !== 'object' || Array.isArray(value)) {
        throw new Error('not a JSON object');
    }
    return value;
}

async function fetchKeys(r, uri) {
    var reply = await r.subrequest(uri, {method: 'GET'});
    if (reply.status !== 200) {
        r.error('msa auth: the signing keys at ' + uri + ' answered ' + reply.status);
        throw new Rejection(503, 'identity provider unavailable');
    }
    var keys;
    try {
        keys = JSON.parse(reply.responseText).keys;
    } catch (e) {
        keys = null;
    }
    if (!Array.isArray(keys)) {
        r.error('msa auth: the signing keys at ' + uri + ' are not a JWK set');
        throw new Rejection(503, 'identity provider unavailable');
    }
    return keys;
}

function pickKey(keys, kid) {
    for (var i = 0; i < keys.length; i++) {
        var key = keys[i];
        if (key && key.kid === kid && key.kty === 'RSA' && typeof key.n === 'string' && typeof key.e === 'string'
            && (key.use === undefined || key.use === 'sig')
            && (key.alg === undefined || key.alg === 'RS256')) {
            return key;
        }
    }
    return null;
}

async function signingKey(r, kid) {
    // (njs 0.7 takes no await inside a call's arguments.)
    var keys = await fetchKeys(r, r.variables.msa_jwt_keys);
    var key = pickKey(keys, kid);
    if (key === null) {
        // A key Keycloak added since the keys were cached; the fresh location asks Keycloak at
        // most once in a few seconds, so made-up key IDs cannot flood it.
        keys = await fetchKeys(r, r.variables.msa_jwt_keys_fresh);
        key = pickKey(keys, kid);
    }
    return key;
}

// A signature that does not verify leaves its reason in OpenSSL's per-thread error queue,
// where NGINX's next TLS call finds it and logs "ignoring stale global SSL error" as an
// alert. njs empties that queue when it reports an error of its own: a key it cannot import.
async function clearOpensslErrors() {
    try {
        await crypto.subtle.importKey('spki', Buffer.from([0x30, 0x00]),
                                      {name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256'}, false, ['verify']);
    } catch (e) {
        // expected
    }
}

function hasAudience(aud, audience) {
    if (typeof aud === 'string') {
        return aud === audience;
    }
    return Array.isArray(aud) && aud.indexOf(audience) >= 0;
}

function roleList(holder) {
    var roles = holder && typeof holder === 'object' && Array.isArray(holder.roles) ? holder.roles : [];
    return roles.filter(function (role) {
        return typeof role === 'string' && /^[^\s\u0000-\u001f\u007f]+$/.test(role);
    });
}

function claimText(claims, name) {
    var value = claims[name];
    if (value === undefined || value === null) {
        return '';
    }
    if (typeof value !== 'string' || CONTROL.test(value)) {
        throw invalid('invalid ' + name + ' claim');
    }
    return value;
}

async function check(r) {
    var v = r.variables;
    var authorization = r.headersIn.Authorization || '';
    var scheme = /^Bearer +(\S*)$/i.exec(authorization);
    if (!scheme) {
        return new Rejection(401, 'bearer token required');
    }
    var parts = scheme[1].split('.');
    if (parts.length !== 3 || !/^[A-Za-z0-9_-]+$/.test(parts[0] + parts[1] + parts[2])) {
        return invalid('malformed token');
    }

    var header;
    var claims;
    try {
        header = decodeJson(parts[0]);
        claims = decodeJson(parts[1]);
    } catch (e) {
        return invalid('malformed token');
    }
    if (header.alg !== 'RS256') {
        return invalid('unsupported token algorithm');
    }
    if (typeof header.kid !== 'string' || header.kid.length === 0) {
        return invalid('token names no key');
    }

    var jwk = await signingKey(r, header.kid);
    if (jwk === null) {
        return invalid('unknown signing key');
    }
    var signed;
    try {
        var key = await crypto.subtle.importKey('spki', rsaSpki(base64url(jwk.n), base64url(jwk.e)),
                                                {name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256'}, false, ['verify']);
        signed = await crypto.subtle.verify({name: 'RSASSA-PKCS1-v1_5'}, key, base64url(parts[2]),
                                            Buffer.from(parts[0] + '.' + parts[1]));
    } catch (e) {
        r.error('msa auth: key ' + header.kid + ' could not check a signature: ' + e.message);
        return invalid('signature invalid');
    }
    if (!signed) {
        await clearOpensslErrors();
        return invalid('signature invalid');
    }

    var now = Date.now() / 1000;
    var leeway = Number(v.msa_jwt_leeway) || 0;
    if (typeof claims.exp !== 'number' || claims.exp + leeway <= now) {
        return invalid('token expired');
    }
    if (claims.nbf !== undefined && (typeof claims.nbf !== 'number' || claims.nbf - leeway > now)) {
        return invalid('token not yet valid');
    }
    if (claims.iss !== v.msa_jwt_issuer) {
        return invalid('wrong issuer');
    }
    if (!hasAudience(claims.aud, v.msa_jwt_audience)) {
        return invalid('wrong audience');
    }
    // Keycloak marks access tokens "Bearer"; ID tokens ("ID") and others are refused.
    if (claims.typ !== undefined && claims.typ !== 'Bearer') {
        return invalid('not an access token');
    }

    var held = roleList(claims.realm_access);
    var clientRoles = roleList((claims.resource_access || {})[v.msa_jwt_audience]);
    for (var i = 0; i < clientRoles.length; i++) {
        if (held.indexOf(clientRoles[i]) < 0) {
            held.push(clientRoles[i]);
        }
    }
    var wanted = (v.msa_jwt_roles || '').split(' ').filter(function (role) { return role.length > 0; });
    var matched = wanted.length === 0 ? held : wanted.filter(function (role) { return held.indexOf(role) >= 0; });
    if (wanted.length > 0 && matched.length === 0) {
        return new Rejection(403, 'missing role');
    }

    return {
        status: 204,
        subject: claimText(claims, 'sub'),
        username: claimText(claims, 'preferred_username'),
        roles: matched.join(' ')
    };
}

async function verify(r) {
    var result;
    try {
        result = await check(r);
    } catch (e) {
        if (e instanceof Rejection) {
            result = e;
        } else {
            r.error('msa auth: ' + e.message);
            result = new Rejection(503, 'identity provider unavailable');
        }
    }

    if (result.status === 204) {
        r.headersOut['X-Msa-Auth-Subject'] = result.subject;
        r.headersOut['X-Msa-Auth-Username'] = result.username;
        r.headersOut['X-Msa-Auth-Roles'] = result.roles;
        r.return(204);
        return;
    }

    var challenge = 'Bearer realm="' + r.variables.msa_jwt_realm + '"';
    if (result.status === 403) {
        challenge += ', error="insufficient_scope"';
    } else if (result.reason !== 'bearer token required') {
        challenge += ', error="invalid_token"';
    }
    if (result.status !== 503) {
        r.headersOut['X-Msa-Auth-Challenge'] = challenge;
        r.warn('msa auth: ' + result.status + ' ' + result.reason);
    }
    r.headersOut['X-Msa-Auth-Status'] = String(result.status);
    r.headersOut['X-Msa-Auth-Reason'] = result.reason;
    r.return(result.status === 403 ? 403 : 401);
}

export default {verify: verify};
