/*
 * Gardien consent banner (docs/consent.md is the contract).
 *
 * One script tag: it loads its stylesheet and /consent/config.json next to its own URL, asks
 * (or not, when a valid decision or Global Privacy Control is there), writes the
 * gardien_consent cookie, posts a proof-of-consent record at every decision and releases the
 * scripts and embeds the page holds back with data-gardien-category. Every text comes from the
 * config, so nothing here is in any one language. Never looks at navigator.webdriver.
 */
(function () {
  'use strict';
  var doc = document;
  var script = doc.currentScript;
  if (!script || window.Gardien && window.Gardien.consent) return;
  var COOKIE = 'gardien_consent';
  var BLOCKED = 'script[type="text/plain"][data-gardien-category],iframe[data-gardien-category][data-src]';
  var FOCUSABLE = 'a[href],button,input:not([disabled]),[tabindex]:not([tabindex="-1"])';
  var src = script.src;
  var lang = (script.getAttribute('data-lang') || doc.documentElement.lang || '').split('-')[0];
  var navigatorGpc = navigator.globalPrivacyControl === true;

  var config = null; // the revision shown, once loaded
  var decision = null; // {consentId, revision, decidedAt, choices} when valid for this revision
  var previous = null; // an expired or other-revision decision: its id is kept, the banner says why
  var root, banner, panel, manage, spacer, bannerReturn, panelReturn, wantPanel, erased;

  function url(path) {
    return new URL(path, src).href;
  }

  function el(tag, attrs, children) {
    var node = doc.createElement(tag);
    for (var name in attrs) {
      if (attrs[name] === true) node.setAttribute(name, '');
      else if (attrs[name] != null && attrs[name] !== false) node.setAttribute(name, attrs[name]);
    }
    (children || []).forEach(function (child) {
      if (child != null) node.append(child);
    });
    return node;
  }

  function optional() {
    return config.categories.filter(function (category) {
      return !category.required;
    });
  }

  // --- the cookie: 1:<id>:<revision>:<decided at>:<cat>=1&<cat>=0 ------------------------

  function expiry(decidedAt) {
    // Calendar arithmetic as the register means it: 31 Aug + 6 months = 28 Feb, never 3 Mar.
    var life = config.lifetime;
    var at = new Date(decidedAt * 1000);
    var month = at.getUTCMonth() + (life.months || 0);
    var year = at.getUTCFullYear() + (life.years || 0) + Math.floor(month / 12);
    month = ((month % 12) + 12) % 12;
    var last = new Date(Date.UTC(year, month + 1, 0)).getUTCDate();
    at.setUTCFullYear(year, month, Math.min(at.getUTCDate(), last));
    return at.getTime() + (life.days || 0) * 864e5;
  }

  function readCookie() {
    var found = null;
    doc.cookie.split(/;\s*/).forEach(function (pair) {
      if (pair.indexOf(COOKIE + '=') === 0) found = pair.slice(COOKIE.length + 1);
    });
    var parts = found && found.split(':');
    if (!parts || parts.length !== 5 || parts[0] !== '1' || !/^[0-9a-f]{32}$/.test(parts[1])) {
      return null;
    }
    var stored = {
      consentId: parts[1],
      revision: +parts[2],
      decidedAt: +parts[3],
      choices: {},
    };
    if (!/^\d+$/.test(parts[2]) || !/^\d+$/.test(parts[3])) return { consentId: parts[1] };
    var wellFormed = parts[4].split('&').every(function (item) {
      var pair = item.split('=');
      stored.choices[pair[0]] = pair[1] === '1';
      return pair.length === 2 && /^[01]$/.test(pair[1]);
    });
    return wellFormed ? stored : { consentId: parts[1] };
  }

  function isCurrent(stored) {
    var names = optional().map(function (category) {
      return category.id;
    });
    return (
      stored.revision === config.revision &&
      Object.keys(stored.choices).length === names.length &&
      names.every(function (name) {
        return name in stored.choices;
      }) &&
      stored.decidedAt * 1000 <= Date.now() + 864e5 &&
      Date.now() < expiry(stored.decidedAt)
    );
  }

  function writeCookie(record) {
    var value = optional()
      .map(function (category) {
        return category.id + '=' + (record.choices[category.id] ? 1 : 0);
      })
      .join('&');
    var seconds = Math.floor((expiry(record.decidedAt) - record.decidedAt * 1000) / 1000);
    doc.cookie =
      COOKIE + '=1:' + record.consentId + ':' + record.revision + ':' + record.decidedAt + ':' +
      value + ';Max-Age=' + seconds + ';Path=/;SameSite=Lax' +
      (location.protocol === 'https:' ? ';Secure' : '');
  }

  function newConsentId() {
    var bytes = crypto.getRandomValues(new Uint8Array(16));
    bytes[6] = (bytes[6] & 15) | 64; // a UUID version 4 in 32 hex: 122 random bits
    bytes[8] = (bytes[8] & 63) | 128;
    return Array.prototype.map
      .call(bytes, function (byte) {
        return (byte + 256).toString(16).slice(1);
      })
      .join('');
  }

  function deleteCookies(category) {
    var host = location.hostname.split('.');
    var domains = [''];
    for (var i = 0; i < host.length - 1; i++) domains.push(';Domain=' + host.slice(i).join('.'));
    var paths = ['/', location.pathname, location.pathname.replace(/[^/]*$/, '')];
    (category.cookies || []).forEach(function (cookie) {
      var pattern = new RegExp(
        '^' +
          (cookie.pattern
            ? cookie.name.split('*').map(escape).join('.*')
            : escape(cookie.name)) +
          '$'
      );
      doc.cookie.split(/;\s*/).forEach(function (pair) {
        var name = pair.split('=')[0];
        if (!name || !pattern.test(name)) return;
        domains.forEach(function (domain) {
          paths.forEach(function (path) {
            doc.cookie = name + '=;Max-Age=0;Path=' + path + domain;
          });
        });
      });
    });
  }

  function escape(text) {
    return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  }

  // --- decisions -----------------------------------------------------------------------

  function gpc() {
    return config.gpc === true || navigatorGpc;
  }

  function snapshot() {
    return (
      decision && {
        consentId: decision.consentId,
        revision: decision.revision,
        decidedAt: decision.decidedAt,
        choices: Object.assign({}, decision.choices),
      }
    );
  }

  function announce() {
    doc.dispatchEvent(new CustomEvent('gardien:consent', { detail: snapshot() }));
  }

  function decide(choices, action, layer, control) {
    var before = decision;
    var withdrawn = false;
    optional().forEach(function (category) {
      if (before && before.choices[category.id] && !choices[category.id]) withdrawn = true;
      if (!choices[category.id]) deleteCookies(category);
    });
    if (withdrawn) action = 'withdraw';
    else if (!before && previous && previous.revision != null && layer !== 'api') action = 'renewal';
    decision = {
      consentId: (before || previous || {}).consentId || newConsentId(),
      revision: config.revision,
      decidedAt: Math.floor(Date.now() / 1000),
      choices: choices,
    };
    previous = null;
    writeCookie(decision);
    fetch(url('../api/consent/records'), {
      method: 'POST',
      keepalive: true,
      credentials: 'same-origin',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({
        consent_id: decision.consentId,
        action: action,
        layer: layer,
        control: control,
        revision: config.revision,
        hash: config.hash,
        choices: choices,
        language: config.language,
        page: location.pathname,
        client_time: new Date().toISOString(),
        gpc: gpc(),
        dnt: navigator.doNotTrack === '1',
      }),
    }).catch(function () {});
    release();
    announce();
  }

  function all(granted) {
    var choices = {};
    optional().forEach(function (category) {
      choices[category.id] = granted;
    });
    return choices;
  }

  // --- holding back and releasing scripts and embeds -----------------------------------

  function granted(node) {
    return (node.getAttribute('data-gardien-category') || '').split(/\s+/).every(function (id) {
      return config.categories.some(function (category) {
        return category.id === id && (category.required || (decision && decision.choices[id]));
      });
    });
  }

  function release(scope) {
    if (!config) return;
    var nodes = [].slice.call((scope || doc).querySelectorAll(BLOCKED));
    if (scope && scope.matches && scope.matches(BLOCKED)) nodes.unshift(scope);
    nodes.forEach(function (node) {
      if (!node.isConnected || !granted(node)) return;
      if (node.tagName === 'IFRAME') {
        node.src = node.getAttribute('data-src');
        node.removeAttribute('data-src');
        return;
      }
      var live = doc.createElement('script');
      [].forEach.call(node.attributes, function (attr) {
        if (!/^(type|data-src|data-type)$/.test(attr.name)) live.setAttribute(attr.name, attr.value);
      });
      if (node.getAttribute('data-type')) live.type = node.getAttribute('data-type');
      live.nonce = node.nonce; // a strict CSP allows the inline copy by the original's nonce
      live.async = false; // external ones keep their document order
      if (node.getAttribute('data-src')) live.src = node.getAttribute('data-src');
      else live.text = node.text;
      node.replaceWith(live);
    });
  }

  // --- interface -----------------------------------------------------------------------

  function button(text, onClick, extra) {
    var node = el('button', Object.assign({ type: 'button', class: 'gc-b' }, extra), [text]);
    node.addEventListener('click', onClick);
    return node;
  }

  function closeButton(onClick) {
    return button('\u00d7', onClick, { class: 'gc-x', 'aria-label': config.texts.close });
  }

  function trapKeys(dialog, onEscape) {
    dialog.addEventListener('keydown', function (event) {
      if (event.key === 'Escape') {
        event.preventDefault();
        onEscape();
      } else if (event.key === 'Tab' && dialog.getAttribute('aria-modal')) {
        var items = dialog.querySelectorAll(FOCUSABLE);
        var first = items[0];
        var last = items[items.length - 1];
        if (event.shiftKey ? doc.activeElement === first || doc.activeElement === dialog
                           : doc.activeElement === last) {
          event.preventDefault();
          (event.shiftKey ? last : first).focus();
        }
      }
    });
  }

  function restoreFocus(target) {
    if (target && target !== doc.body && target.isConnected && target.getClientRects().length) {
      target.focus();
    } else {
      manage.focus();
    }
  }

  function setBannerVisible(visible) {
    banner.hidden = !visible;
    manage.hidden = visible;
    var height = visible ? banner.offsetHeight + 'px' : '';
    spacer.style.height = height;
    // WCAG 2.4.11: what gets keyboard focus is scrolled clear of the banner.
    doc.documentElement.style.scrollPaddingBottom = height;
  }

  function buildBanner() {
    var T = config.texts;
    var reason = previous && previous.revision !== config.revision && previous.revision > 0;
    banner = el(
      'div',
      { class: 'gc-banner', role: 'dialog', 'aria-labelledby': 'gc-title', 'aria-describedby': 'gc-body', tabindex: '-1', hidden: true },
      [
        el('h2', { id: 'gc-title' }, [T.title]),
        el('p', { id: 'gc-body' }, [T.body]),
        reason ? el('p', { class: 'gc-note' }, [T.changed + (config.changes ? ' ' + config.changes : '')]) : null,
        config.policy_url && T.policy ? el('p', {}, [el('a', { href: config.policy_url }, [T.policy])]) : null,
        el('div', { class: 'gc-actions' }, [
          button(T.accept, function () {
            finish(all(true), 'accept_all', 'banner', 'accept');
          }),
          button(T.reject, function () {
            finish(all(false), 'reject_all', 'banner', 'reject');
          }),
          button(T.customise, function () {
            openPanel(bannerReturn);
          }),
        ]),
        closeButton(function () {
          finish(all(false), 'close_dismiss', 'banner', 'close');
        }),
      ]
    );
    trapKeys(banner, function () {
      finish(all(false), 'close_dismiss', 'banner', 'escape');
    });
    return banner;
  }

  function finish(choices, action, layer, control) {
    var target = panel ? panelReturn : bannerReturn;
    decide(choices, action, layer, control);
    closePanel();
    setBannerVisible(false);
    restoreFocus(target);
  }

  function cookieTable(category) {
    var T = config.texts;
    var labels = [T.cookie, T.provider, T.purpose, T.duration];
    if (!category.cookies || !category.cookies.length) return null;
    return el('table', {}, [
      el('caption', { class: 'gc-sr' }, [category.title]),
      el('thead', {}, [el('tr', {}, labels.map(function (label) {
        return el('th', { scope: 'col' }, [label]);
      }))]),
      el('tbody', {}, category.cookies.map(function (cookie) {
        var cells = [el('code', {}, [cookie.name]), cookie.provider, cookie.purpose, cookie.duration];
        // data-label: narrow screens show each cookie as a card, each value after its header.
        return el('tr', {}, cells.map(function (value, index) {
          return el('td', { 'data-label': labels[index] }, [value]);
        }));
      })),
    ]);
  }

  // --- the data bound to this browser, proven by holding its cookies (docs/rights.md) -----

  function selfService() {
    var S = config.self_service;
    if (!S) return null;
    var status = el('div', { role: 'status' });
    function call(kind, then) {
      fetch(url('../api/rights/possession/' + kind + '?lang=' + config.language), {
        method: 'POST',
        credentials: 'same-origin',
        headers: { 'X-Gardien-Self-Service': '1' },
      })
        .then(function (response) {
          if (!response.ok) throw 0;
          return then(response);
        })
        .catch(function () {
          status.textContent = S.failed;
        });
    }
    function save(blob, name, text, details) {
      var link = el('a', { href: URL.createObjectURL(blob), download: name }, [text]);
      status.replaceChildren(link, details || '');
      if (!details) link.click();
    }
    return el('section', { class: 'gc-cat', 'aria-labelledby': 'gc-stitle' }, [
      el('h3', { id: 'gc-stitle' }, [S.heading]),
      el('p', {}, [S.intro + ' ' + S.cookieless]),
      el('div', { class: 'gc-actions' }, [
        button(S.export, function () {
          call('export', function (response) {
            return response.blob().then(function (blob) {
              save(blob, response.headers.get('X-Gardien-Case') + '.zip', S.exported);
            });
          });
        }),
        button(S.erase, function () {
          if (confirm(S.confirm)) call('erase', function (response) {
            return response.json().then(function (receipt) {
              config.categories.forEach(deleteCookies);
              doc.cookie = COOKIE + '=;Max-Age=0;Path=/';
              decision = previous = null;
              erased = true;
              panel.querySelector('.gc-id').remove();
              var blob = new Blob([JSON.stringify(receipt, null, 2)], { type: 'application/json' });
              save(blob, receipt.case + '.json', S.erased.replace('%s', receipt.case), el('ul', {},
                receipt.stores.map(function (store) {
                  return el('li', {}, [[store.store, store.matched, store.erased, store.kept]
                    .reduce(function (line, value) {
                      return line.replace('%s', value);
                    }, S.line)]);
                })));
            });
          });
        }),
      ]),
      status,
    ]);
  }

  function openPanel(returnTo) {
    if (!config) {
      wantPanel = true;
      return;
    }
    if (panel) return;
    var T = config.texts;
    var current = decision && decision.choices;
    panelReturn = returnTo || doc.activeElement;
    var switches = {};
    var id = (decision || previous || {}).consentId;
    var box = el('div', {
      class: 'gc-panel', role: 'dialog', 'aria-modal': 'true', 'aria-labelledby': 'gc-ptitle', tabindex: '-1',
    }, [
      el('h2', { id: 'gc-ptitle' }, [T.panel || T.manage]),
      gpc() ? el('p', { class: 'gc-note' }, [T.gpc]) : null,
      config.categories.map(function (category) {
        var input = el('input', {
          type: 'checkbox', role: 'switch', id: 'gc-c-' + category.id,
          checked: category.required || !!(current && current[category.id]),
          disabled: !!category.required,
          'aria-describedby': 'gc-d-' + category.id,
        });
        switches[category.id] = input;
        return el('section', { class: 'gc-cat' }, [
          el('div', { class: 'gc-row' }, [
            input,
            el('label', { for: input.id }, [category.title]),
            category.required ? el('span', { class: 'gc-on' }, [T.always_on]) : null,
          ]),
          el('p', { id: 'gc-d-' + category.id }, [category.description]),
          cookieTable(category),
        ]);
      }),
      id ? selfService() : null,
      id ? el('p', { class: 'gc-id' }, [
        T.consent_id + ' ', el('code', {}, [id]), ' ',
        el('a', { href: url(config.history_url + id), download: 'consent-' + id + '.json' }, [T.download]),
      ]) : null,
      el('div', { class: 'gc-actions' }, [
        button(T.accept, function () {
          finish(all(true), 'accept_all', 'panel', 'accept');
        }),
        button(T.reject, function () {
          finish(all(false), 'reject_all', 'panel', 'reject');
        }),
        button(T.save, function () {
          var choices = {};
          optional().forEach(function (category) {
            choices[category.id] = switches[category.id].checked;
          });
          finish(choices, 'custom_save', 'panel', 'save');
        }),
      ]),
      closeButton(function () {
        dismissPanel('close');
      }),
    ].flat());
    trapKeys(box, function () {
      dismissPanel('escape');
    });
    panel = el('div', { class: 'gc-overlay' }, [box]);
    root.append(panel);
    banner.hidden = true;
    manage.hidden = true;
    box.focus();
  }

  function dismissPanel(control) {
    // Closing without a decision is a refusal; closing after one keeps it as it is; after an
    // erasure the banner asks again.
    if (erased) {
      closePanel();
      setBannerVisible(true);
      return banner.focus();
    }
    if (!decision) return finish(all(false), 'close_dismiss', 'panel', control);
    var target = panelReturn;
    closePanel();
    manage.hidden = false;
    restoreFocus(target);
  }

  function closePanel() {
    if (panel) panel.remove();
    panel = null;
  }

  function start(loaded) {
    config = loaded;
    var T = config.texts;
    root = el('div', { class: 'gc', lang: config.language });
    spacer = el('div', { class: 'gc-spacer', 'aria-hidden': 'true' });
    manage = button('', function () {
      openPanel();
    }, { class: 'gc-manage', 'aria-label': T.manage, title: T.manage, hidden: true });
    manage.innerHTML =
      '<svg viewBox="0 0 24 24" aria-hidden="true" focusable="false"><path d="M12 2a10 10 0 1 0 10 10 4 4 0 0 1-5-5 4 4 0 0 1-5-5zm-4 9a1.5 1.5 0 1 1 0 3 1.5 1.5 0 0 1 0-3zm5 4a1.5 1.5 0 1 1 0 3 1.5 1.5 0 0 1 0-3zm-4-9a1 1 0 1 1 0 2 1 1 0 0 1 0-2z"/></svg>';
    var stored = readCookie();
    if (stored && stored.revision != null && isCurrent(stored)) decision = stored;
    else previous = stored;
    root.append(spacer, buildBanner(), manage);
    doc.body.append(root);
    release();
    new MutationObserver(function (mutations) {
      mutations.forEach(function (mutation) {
        [].forEach.call(mutation.addedNodes, function (node) {
          if (node.nodeType === 1) release(node);
        });
      });
    }).observe(doc.documentElement, { childList: true, subtree: true });
    if (decision) {
      announce();
      setBannerVisible(false);
    } else if (gpc()) {
      decide(all(false), 'gpc_auto_reject', 'api', 'gpc');
      setBannerVisible(false);
    } else {
      setBannerVisible(true);
      if (!doc.activeElement || doc.activeElement === doc.body) {
        bannerReturn = doc.activeElement;
        banner.focus();
      }
    }
    if (wantPanel) openPanel();
  }

  window.Gardien = window.Gardien || {};
  window.Gardien.consent = {
    show: function () {
      openPanel();
    },
    get: snapshot,
  };

  // Strict CSPs forbid onclick attributes: a footer link or button says data-gardien-consent="show".
  doc.addEventListener('click', function (event) {
    var opener = event.target.closest && event.target.closest('[data-gardien-consent="show"]');
    if (opener) {
      event.preventDefault();
      openPanel(opener);
    }
  });

  doc.head.append(el('link', { rel: 'stylesheet', href: url('gardien-consent.css') }));
  fetch(url('config.json' + (lang ? '?lang=' + encodeURIComponent(lang) : '')), {
    credentials: 'same-origin',
  })
    .then(function (response) {
      if (!response.ok) throw new Error(response.status);
      return response.json();
    })
    .then(function (loaded) {
      if (doc.body) start(loaded);
      else doc.addEventListener('DOMContentLoaded', function () {
        start(loaded);
      });
    })
    .catch(function () {});
})();
