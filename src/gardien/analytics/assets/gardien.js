/*
 * gardien.js: Gardien's audience-measurement tracker, also served as /matomo.js and /piwik.js
 * (docs/analytics.md, "The tracker", is the contract).
 *
 * It speaks the _paq queue API a Matomo site already uses, so the standard Matomo snippet
 * works unchanged, and sends Matomo's tracking parameters to /matomo.php with sendBeacon
 * (an image request where there is none). It sets no cookie of its own to measure: without
 * consent the server measures without cookies, and with the visitor's consent to audience
 * measurement (the banner's gardien_consent cookie) the server itself sets Matomo's visitor
 * cookie. The only cookie this script writes is the visitor's objection (optUserOut), the
 * strictly necessary gardien_optout cookie the server also reads, so it refuses their hits
 * whatever sends them.
 */
(function (w, d) {
  var queued = w._paq;
  // Already running (this script loaded twice, as gardien.js and matomo.js, or matomo.js
  // itself): the queue is no longer an array.
  if (queued && !Array.isArray(queued)) return;
  var nav = navigator;
  var loc = location;
  var script = d.currentScript;
  var CATEGORY = 'audience_measurement'; // the consent banner's category (register.yaml)
  var OPTOUT = 'gardien_optout';
  // The register's lifetime of the gardien_optout cookie, in seconds: written in when served.
  var OPTOUT_MAX_AGE = '__GARDIEN_OPTOUT_MAX_AGE__';
  // Matomo's default download extensions (js/piwik.js, 5.x).
  var DOWNLOAD = new RegExp(
    '\\.(3mf|7z|aac|apk|ar[cj]|as[cfx]|avi|azw3|bin|csv|deb|dmg|docx?|epub|exe|flv|gif|' +
      'gz(ip)?|hqx|ibooks|jar|jpe?g|js|md5|mobi|mov(ie)?|mp[234]|mpe?g|ms[ip]|obj|od[bfgst]|' +
      'og[gv]|pdf|phps|png|ply|pptx?|qtm?|ra[mr]?|rpm|rtf|sea|sha(256|512)?|sig|sit|stl|tar|' +
      't?bz2?|tgz|torrent|txt|wav|wm[av]|wpd|xlsx?|xml|xz|z|zip)([?&#]|$)',
    'i'
  );

  // By default the endpoint next to this script: <script src="https://h/gardien.js"> sends to
  // https://h/matomo.php.
  var trackerUrl = script && script.src ? script.src.replace(/[^/]*$/, 'matomo.php') : '';
  var siteId, customUrl, title, userId, linkTracking, cookiesDisabled;
  var consentRequired, consentGiven, optedOutHere, referrerSet;
  var referrer = d.referrer;
  var dimensions = {};
  var held = []; // requests waiting for consent (requireConsent)
  var pageViewId;
  var lastHref; // location.href when the last page view was tracked
  var lastUrl; // the URL that page view reported
  var lastAutomatic; // whether it was tracked on a history change
  var historyTimer;

  function random() {
    return (Math.random().toString(36) + '00000').slice(2, 8);
  }

  function cookie(pattern) {
    var found = d.cookie.match(new RegExp('(?:^|; )' + pattern + '=([^;]*)'));
    return found && found[1];
  }

  function writeCookie(value) {
    d.cookie = value + ';Path=/;SameSite=Lax' + (loc.protocol == 'https:' ? ';Secure' : '');
  }

  // The consent banner's decision: its API once loaded, else its cookie (format in
  // docs/consent.md: 1:<id>:<revision>:<decided at>:<category>=1&<category>=0).
  function bannerGranted() {
    var decision = w.Gardien?.consent?.get();
    if (decision) return !!decision.choices[CATEGORY];
    return /^1:.*[:&]audience_measurement=1\b/.test(cookie('gardien_consent'));
  }

  function consented() {
    return consentGiven || bannerGranted();
  }

  function optedOut() {
    return optedOutHere || cookie(OPTOUT) == '1' || cookie('mtm_consent_removed') != null;
  }

  function send(params) {
    if (!trackerUrl || !siteId || optedOut()) return;
    params.idsite = siteId;
    params.rec = 1;
    params.r = random();
    params.send_image = 0;
    if (consented()) {
      if (consentRequired) params.consent = 1;
      // Matomo's visitor cookie, set by the server with consent: the id it holds.
      var visitor = !cookiesDisabled && cookie('_pk_id\\.' + siteId + '\\.[0-9a-f]{4}');
      if (visitor) params._id = visitor.slice(0, 16);
    }
    var query = [];
    for (var name in params) {
      var value = params[name];
      if (value || value === 0) query.push(name + '=' + encodeURIComponent(value));
    }
    var url = trackerUrl + '?' + query.join('&');
    // Matomo's default: a beacon POST, parameters in the URL, empty body; it outlives the page.
    if (!nav.sendBeacon?.(url)) new Image().src = url;
  }

  function request(params) {
    if (optedOut()) return;
    params.url = params.url || customUrl || loc.href;
    params.urlref = referrer;
    params.res = screen.width + 'x' + screen.height;
    params.pv_id = pageViewId;
    params.uid = userId;
    params.cookie = cookiesDisabled && 0;
    for (var id in dimensions) params['dimension' + id] = dimensions[id];
    if (consentRequired && !consented()) held.push(params);
    else send(params);
  }

  function release() {
    if (!consented()) return;
    var waiting = held;
    held = [];
    waiting.forEach(send);
  }

  function pageView(customTitle, automatic) {
    var url = automatic ? loc.href : customUrl || loc.href;
    // A single-page application that also tracks its own route changes: the same navigation
    // counts once, whichever of the two comes first.
    if (automatic ? loc.href == lastHref : lastAutomatic && url == lastUrl) {
      if (!automatic) lastAutomatic = 0; // a second call of the site's own counts again
      return;
    }
    // Inside a single-page application, the page the visitor comes from is the last one
    // (unless the site said otherwise with setReferrerUrl since).
    if (lastUrl && !referrerSet) referrer = lastUrl;
    referrerSet = 0;
    lastHref = loc.href;
    lastUrl = url;
    lastAutomatic = automatic;
    pageViewId = random();
    request({ url: url, action_name: customTitle || (!automatic && title) || d.title });
  }

  function historyChanged() {
    clearTimeout(historyTimer);
    // Later than the router's own work, so the new title is in place.
    historyTimer = setTimeout(function () {
      if (lastHref) pageView(0, 1);
    }, 100);
  }

  function linkClicked(event) {
    var link = linkTracking && event.target.closest?.('a[href]');
    if (!link) return;
    var href = link.href;
    // Matomo's classes: matomo_ignore, matomo_download, matomo_link (or piwik_...).
    var kind = / (?:matomo|piwik)_(ignore|download|link) /.exec(' ' + link.className + ' ');
    kind = kind
      ? kind[1]
      : link.hasAttribute('download') || DOWNLOAD.test(href)
        ? 'download'
        : link.hostname.replace(/^www\./, '') != loc.hostname.replace(/^www\./, '') && 'link';
    if (/^https?:/i.test(href) && kind && kind != 'ignore') request({ [kind]: href });
  }

  // Applied first from the queue, as matomo.js does: the standard snippet pushes trackPageView
  // before setTrackerUrl and setSiteId.
  var settings = {
    setTrackerUrl: function (url) {
      trackerUrl = url;
    },
    setSiteId: function (id) {
      siteId = id;
    },
    setUserId: function (id) {
      userId = id;
    },
    enableLinkTracking: function () {
      linkTracking = 1;
    },
    requireConsent: function () {
      consentRequired = 1;
    },
    disableCookies: function () {
      cookiesDisabled = 1;
    },
  };
  var tracker = Object.assign({}, settings, {
    trackPageView: function (customTitle) {
      pageView(customTitle);
    },
    trackEvent: function (category, action, name, value) {
      value = parseFloat(value);
      if (category && action) {
        value = isFinite(value) ? value : null;
        request({ e_c: category, e_a: action, e_n: name, e_v: value, ca: 1 });
      }
    },
    trackSiteSearch: function (keyword, category, count) {
      count = /^\d+$/.test(count) ? count : null;
      request({ search: keyword, search_cat: category, search_count: count });
    },
    trackLink: function (url, type) {
      request({ [type == 'download' ? 'download' : 'link']: url });
    },
    setCustomDimension: function (id, value) {
      if (id > 0) dimensions[id | 0] = value;
    },
    setCustomUrl: function (url) {
      customUrl = new URL(url, loc.href).href;
    },
    setDocumentTitle: function (text) {
      title = text;
    },
    setReferrerUrl: function (url) {
      referrer = url;
      referrerSet = 1;
    },
    setConsentGiven: function () {
      consentGiven = 1;
      release();
    },
    forgetConsentGiven: function () {
      consentGiven = 0;
      consentRequired = 1;
    },
    optUserOut: function () {
      optedOutHere = 1;
      held = [];
      writeCookie(OPTOUT + '=1;Max-Age=' + OPTOUT_MAX_AGE);
    },
    forgetUserOptOut: function () {
      optedOutHere = 0;
      writeCookie(OPTOUT + '=;Max-Age=0');
      writeCookie('mtm_consent_removed=;Max-Age=0');
    },
    isUserOptedOut: function () {
      return !!optedOut();
    },
  });

  // Matomo's variant that also writes its mtm_consent cookie: here, consent for the page only.
  tracker.rememberConsentGiven = tracker.setConsentGiven;

  function apply(item) {
    try {
      var method = item[0];
      var args = item.slice(1);
      // Unknown methods are ignored, as a Matomo site may call any of matomo.js's many others.
      if (typeof method == 'function') method.apply(tracker, args);
      else if (tracker.hasOwnProperty(method)) tracker[method].apply(tracker, args);
    } catch (error) {
      // One bad call (not an array, an invalid custom URL, a throwing callback) must not stop
      // the queue.
    }
  }

  queued = [].concat(queued || []);
  [1, 0].forEach(function (first) {
    queued.forEach(function (item) {
      if (settings.hasOwnProperty(item[0]) == first) apply(item);
    });
  });
  w._paq = {
    push: function () {
      [].forEach.call(arguments, apply);
    },
  };

  d.addEventListener('gardien:consent', release);
  d.addEventListener('click', linkClicked, true);
  d.addEventListener('auxclick', linkClicked, true);
  ['pushState', 'replaceState'].forEach(function (name) {
    var original = history[name];
    history[name] = function () {
      historyChanged(); // a timer: the page view comes after the change
      return original.apply(this, arguments);
    };
  });
  w.addEventListener('popstate', historyChanged);
})(window, document);
