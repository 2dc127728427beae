"""The local embedder without PyTorch: its vectors are the ones earlier releases stored.

The reference vectors below were made by the release that exported the model with torch
at each start: ``TORCH`` by sentence-transformers on PyTorch (the float vector space,
model id ``all-MiniLM-L6-v2``), ``INT8`` by its int8 copy of that export (model id
``all-MiniLM-L6-v2-int8``). Stored memories carry those model ids, so the graph built from
the weights must give the same vectors under the same ids, or they would have to be
embedded again.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from builtin_plugins.memory.embedders import bert_onnx
from builtin_plugins.memory.embedders.local import (
    LocalEmbedder,
    find_model_dir,
    local_model_available,
    onnx_runtime_installed,
)

pytestmark = pytest.mark.model

TEXTS = [
    "hello",
    "ok",
    "My sister Marie has a dog called Pixel, and we walk it every Sunday.",
    "クラリス、説明して",
    "東京の明日の天気は？",
    "Où est la gare ? Je voudrais un café crème, s'il vous plaît.",
    "Ünïcödé àccents, emoji 🎻 and MIXED case Words!",
    "The cat sits on the mat.",
    "Stock markets fell sharply today.",
    "A longer message, to be padded against the short ones in the same batch: "
    "what should I cook tonight with leeks, potatoes and a little cream?",
    "Longer than the model's 256 tokens, so cut: " + "jazz, Bill Evans, trains " * 120,
    "",
]
# float16, little-endian, one row of 384 per text, base64
TORCH = (
    "BKwJK60qfi1MrcasYyy2JECtyag1IjUbPJybqZUlOp0BJWypEK+OHSKrLifupUsn4Kq8qlgozykSJq6sAytdJDUt"
    "3ZkfIrUsCK41rR8pqxHbovuqRh2xprYoWahmJSkrZSuMnWGsxq19qQ4mxy8lKM2l9qVBKpmrXKiaKDKtoKXBIt+p"
    "gqy8qiaqxaxbp5Iifql/HQGpEyQvJWUd6CDinCgqrqxyqvEg6SINDw0lACyrpPYnsK0pKq0m46FcrgCn4SxLmOmv"
    "xTQ1KwYtqCG1Kt6U6RP0qtomPqJ9IXCCjagbqCQkjS2lJKShXirIJXeBpiO5ocwdN5yFGhwmnyQAgC8raqg9KF4x"
    "8qf0nNGrA6wFJxMsjCnJK6akeynfJKEtAqmmKQ+diSr0qrgh1ibOLDsqk6nUIpGurSqxJZ2naaniJREpqCBXJTcd"
    "BKxuqlqd2aqfJ5IlS6UcJvId+ZTNJXca7SfIqsgkfLBPKUOh8KFIqHqqACpUJkooJi8qqWOcK60vq+go5CFmLOGo"
    "46k1pEAmACIvIP8otCZeIXwp8KmjHrAp06RwHzEr2CqApWitkKIOqW2rAyjQKRAilaQAADUwFC0UrkSmJauvoByo"
    "SC+fsFsg2idbon4sNyc6KQQlkzBIKyOpkaTbqy0TB6tGnwyQuKKkmH8rYq6JpgctQSW/nMInTyTaLUskG61xKWet"
    "HKYFKvIY/y5XqBms1KhxJ2+pECTMrSOryiUZIMGlpiVzpsQnLSHApFkk4ixUKZotMaL4Jx+ojSLvIp6ntij9namh"
    "8yhPpcWhFqYdoeqlJiJzoZMqGqftisETC6iPKq0puptVqWonOyjGoyuJpqkAgHSgQwg3JJUr1Ck+KPqt/6hKpXQi"
    "cywRLZqs5pyiLRcqrqq1n2Or862cnNMUQiYZrJyaKaeIqGkmC6HJIqoUszGgqM+fH6hqqeQcTifILKCjMqv5Jryh"
    "gq4Apfomfig5rXuV46wdqTgpsiulLHYstC0WJJ6j/KneoisshCqXKkMf56mQq5qlViTMKWykxSYWLIashKzoqeai"
    "kqJBJIgkayJ5rPqquK7PK12ozY4BIZmhf62qq4MiFy0+KMum960XKaAuCio6GEKnaqxAJCQpoCqUHFipaacAKOsp"
    "rSGqKGOpMRfSKDIXVKxxrUCipycHJ+CotqT3Lwiqi6hkp6Gw9pyOpVgkD6cMpA2oDZL7JmKmJSpArDUogqjIlfec"
    "BCitLVSquATbqtKm4K2sosgtFyl2pforMylsqWctpqRmKpihraRYKhyxbzOLLFsoqKbyKCej3a13p2UhDKjGpiak"
    "4CMQKpEtSCuyLwupnyw1LkGiQZhEpkGmVyq0qj2v9SYAgKIkd6saIKqkoiWTKNOjuCOoprkh9iUgIvOv6iJ9MFcw"
    "jimDLdUkhiCHIemr+6o2LLGqiiWnosithCUmKlQbAyc7rrooLCcnp+uXJ6sjqlgnFqgZJcGuySajHnsrfR+pp/Kq"
    "3SzTpJMpaa+7q2Kv4JgynVYqzik9IyQlEizUnWiq6Kp5IMQnsyQTJc2n/acTII4stiy8GRKkVCpQpVAqlqSLK4mf"
    "rqvXLH4r6CD0K0MjASoLqA6t0ShoKsQrsJoAAOqqxC/8qV4dl6RXK0UtISh/p/AnNyEuqH0V950xK5koJihmo4el"
    "Hyx4rHskFacYLdCg3yPnp+Mi4itfKPMogqxKrBukdCUdKQInyagYJQWfZiakqq6mDy8MlWWokiAaqAIo8y1TqLms"
    "96CiKD+p+5OvKAagZqZBqmQchSRpGO0sLSMApJGm9CQfmkSsfiPLpo6uaKg5LKWnUiaOoKKgSx/QpR0a1StSIqwo"
    "oKlGLWEreKZ9q7Cj6JH/LVKoX6YAgMkgcaRPKnUmOCtqL7OiDqEhpMojySy6p9KpL53vKxmkT6yEsAOqeSUUnycq"
    "Zyx7HRYpFCW/KyAm55bUrIAtDh1LKAyo8KJ2p76sG6jfKIwlXan3pzoqYinVrsQmJB3mrB6tzhyxJ3qv06I9Iiwq"
    "Kav/JsCoXywjoiAt2yQbK/OmOqnrqQsvzCnHriqpvCnCq1ghCSEfKAKkiSYbKD2l0qSPDyohqCEzJKWsyajMK7Qq"
    "LaoAKUsaTqYmKWasbKX6LYAnxiujKrwjBSkcKIgiqSz0JtylMC/QrVyoT6l/qyqskynjpUOpYaodI5ErBKUFHFmn"
    "FiHlLLIplaPMKh+EOCizqwQZi63GpZMmeqQ7orQr4CxGJ8Oupim6JOENjiytpB6w4qvpoSgvZyzOLf+iWi3Qqwmu"
    "J610IYqobp8Tq6uqkpqJrDCqIiuxp54qUyYmIggrn6m4o8Yk3CtPHVumCamppWYqTJYpqk+mthm5K+WqaJJNLXuq"
    "Q6wuK8CiPhkAgGcsFis3Jz6lxCo3KzCq4iiXqJupwyBupdqiFqkRjUwqPBvHo8wktSODK+aoNKMaLM4Z4qj2oC6l"
    "jixLKHkpCJ4VKqSb0K4KHBwkmarVqMQutS1lrO4r36okqQiZOyzerGyomaUhJSMg7ykQq5yjsiNuLGusvpodK2Aq"
    "qSKbJbkeyymNre4PPSUPrpUquCihKSMmv65gLfql66tlE/MmxK1FFdsjcahFK3YdBxzWpH4eLLC/qIKdwq0EpSKq"
    "SxoAABKpfCsyLYApI6n6qIelRyw9LWApFKrDKGaXxqbLLJakV5yOl6oqr6+prYoodqj8KbIm1CtTKkcpr6TerSOr"
    "1qwGqnGtPSuOLDGuAap3JXqqwijnrMCeGyqFLA0mih8yJUye6intq/YjdaxPop2jIwo+qT0iaqZKqUMhdiEjrbow"
    "Ma9ap+6sJ6x+KpWjl6RHKuSqPSJOqj4sOywYrKYoZB+KpkWpFyiFJOYo26AcqY8rCJ7FKc+emC2BIk6srakAgOik"
    "VCsEoSmlvS4do2kpRKjjKLMpZyn9q2ukGSuzKgAqdC80HHMoBS0jqpaqbyyrqhusQKwbKZKi/6h3J8OUvilwll8s"
    "MCSfrVooUq6+KnQkgyvFKA2qgqXvn+wgqyyzsIMmbyZHsWEkbqJGoJehkaSVnZisXyw7KawZ7qlUqcIptZztL3in"
    "Zyejp3kphC2OKlwnsaMpKS6sVheHoUesUawEqaqiEKnAKAaY+KeuLMwp1K9hKoEm7CrdKiuo8hlVCDMrwqdKHQil"
    "oaQ6o4qidZ+Bqzir0CaPHdkneKLPrLEZcCqwqayqvKsDsButdCm2rP8rBqi0HpagCSrKJb4ahSozqRaihCvnKG6f"
    "8x2Lpb+reqhoqXeoxCc6JIKqF6WHJZsoDq0frPWohKWYJM0i5SmXoS+bmqwpoEOnxaylsBkpBKiJrX6kVB1Jo8Ei"
    "ziYnLfKuWqiVKqknAST3KUypQa5orOup4Sd6KyIn16u7je4lzwtNIyyrJ6zFquYjBjAAgPaqwqdxqBGrV6jMKIcr"
    "RyiEpoArz6kwLb2a+STgrOUd1SbZJQQor6kuJoMmzSY2H7IsA6+Hp3QoHCM/H9gmXCrZpOcg1CReKGAqnC4rLpMr"
    "cDDNqk2lbaqVLHifNafaJRIqlilfHjalta70LtMnTCN/pvwmfqw8q0UkeJWXq7OqGa0yq0udrKBKIuoQGq0hqZwt"
    "wiMMqZYoXa9UKv8dRSnmpUEo4SzJJGcpCCs/pWWqOaQsKzSttiIoLBQtDBwAgOUp4iR/oMmnAKsGIMooS6pDolCp"
    "cSRFqi4vRqwFphqpvKLPLqSjkSo/o72rZiEsJEApMSBJMJqpxygjpvwoS6fDKc4tFqu/qLstXKv5ptUr2SaVLRko"
    "RSxzIAMq7quEl5CqgZ8vLjutmSH2mNkmWyvJJdyf45dwKpocZSlJn1WkdStzoqyjVSqYJz6lHS1qpAGvvpBmrTYj"
    "k60CpcksJS6WqOorLSWrphyuLKgEqRgnAJw6HIOnPi27JiCt7iwAgH+o/K3HpDUcSyoAraOtBawbJJWnJC63KJ+t"
    "0StDpyIsKiqFJ3kmeaLtJtSlt6IvrqWn8SckrHAsRiXnI7OhrKgKJAMZMKxErJgu2iedrkgrzzAqJuGb/6iDINqp"
    "uyGnLCCtSqjuo1Ug0qGzJyusFqAxoUAuMpeJKY0qNSoCKZ2kYi1wMNktLSQTrQUqyS33nCaog6mVKSywl6gzo18c"
    "gayBII6pLxRRpU4i6aN7IRoruqL8KO6gRCtTLUcoa6gdKbEl+53oG1UkIB9wpb6lZZ2grM0VfSXSpH2obypUn1wp"
    "ECe9pHKod63MpzYlEycjKgQjW6BJIVGi6K3KIu+fMZRSMEUkihyUJRKhQ64DFeagZyOVqt6s4yCkq8an0aWyoSSo"
    "r6p9qS4tEigYJzCmlSw9pLKcwagYKWqqqx0gra4rD6vMJbMgoCIGKyUj8CDPLS0hpqzHI1qqXaaOqTGraq6zqvat"
    "dJgLKsAsBKD5rMMevZ7hII2qAqnsrVkuXi4AABAhsa44nIomFaaCHlelYywRJQmkESdSlaAUu6orKTibUSszqA4r"
    "zaNcKI2sTqQpqBakbqswH/eryCBZJ/+ip6shmxgsbxzHG1gluC/6KAMpmCc0q7WtMa1UMEQpYpqHp78ugCTqJ3Gk"
    "g62NKHcvjClCJMuhLq2ALa4i9SkjjwEeL557qO4gKKsCIkIezKeGqZUvkCpKq06e16gkLsqq0CnRpxKrCSMHLjwt"
    "IJjgKWclGCakoumsu6srLgKgBK0AgBwqxioZrl6nya3nJ+ml7i3AqPUlTauZmnotZ5lHqF0gayz5Kruq8CyPqCKv"
    "hSMnLIWi3CfcMGwmpql7JIuqG5yAKK4sxqmbpTQqjqy4IrcmVKdRI9kv9B6CqZ4tB7DRIhqugyWELDKpZiWxqLQb"
    "XCxMpxYdxyYHHbcqBqedn4wmJamGrZsjLyiUI9SeHSpHozepQqdsraYp6yUcKAApKKRKqb4sZ6j+qHKo2iAwr+Yo"
    "2iaCqgyl4i5ArPut3hkAgIQlLqzaofUgfqhnrJmQtiGsJVQsQS/eJ6ipJSdsrd+kfpgepF6Wd6dLJ4Ok6ShWn5Sc"
    "8CkZqXYpYx82KTMnJSjNqNkltq4irAcnzCrVrlmq+iiYn1SfcaYhKd6sFy0JJQwc1yHlregruCkOFAqocylDoeeZ"
    "oCCxEtMlTi2EsP4mP6zcq7AlFav2nC4sSy3SKAcnYambIL2rmSkprEWgH7GwKK6dWCz0IUIr3CiunGQnMKV2HfUs"
    "A6isKO2l/yilKLimKKa6nw+l1ywZr3QpLC4isIApJa3xriorxyi3KH0j9a4vIbqlQ6P9KFuiMS3+KK+hq6zyLnIr"
    "JpqJrfCfDSPIrLGp5SqRqWGt6yFxHRimaKfTqm2cdS0tnPmgJ6hfqwCd8aiKKZcpXyjQqDwsc5B+LjaZ1qgUKSCr"
    "VKgeqaWkMqvzq3EiVyjgINUo1Si0KD+sWBQCJWSfIClQKPegFaMCol+qZJUJqW4qarCxqgWkMZYPJE2sZqewKLGp"
    "aSsAAI+rJy2Flq2o9yvfKuyv/Sz/n7IgKaOYJimocCXjFi4txSsVIqouyqydp5GpXiyALGonQK0siLWnm6nApQAr"
    "6qVYKpsozqpmpqwsBy6oIUYpKhXBIBumJaCkkJ0rbiVPpiIr/aubpp6fwqx+LdKrECOnrwClMyaHrCYrbCrYKeye"
    "PqgcJHqj7iTdL5alZabLJGQuHyUwKWcgQKwCKFMhBCrprBWp1SNUKOslSqjBqLiXsCfGKeioZZ37I2GpCqUAgMwo"
    "LKiAHAguuqD9HjSoWqTPrAKw06xyqsgwfKfkGdkuQaTjpiGkzKS8o1WswS1WIfolEy2MKZYa16iBJMEgQp3wKuIl"
    "MiYXL00qei2Yor4sK6J6IIaoqymqKjCeGqAQq3yqrqrBKUIiWqyJp5opGKX0pxyqpa2MKBovRCyDqGinPC5Xomar"
    "wSZZLpqcPSxtqEooiCjwq14oV6UgGyCoHxxHraKmQquVp3OcsaddpXinNS0JqwuoORxvLHylwSkAgCIpB6w4GIEt"
    "ECwSsHqtQKyBpbMcXKy5p0GkeCuII6UtSJ13Jqyg7qfqnVust6FhrMCmAqsBokWqlqRsrnygdCj5pcGl8SKPrMQi"
    "rSS3pC+ouSnJJf+o1KsyrNSf1hH3K14sCC40qVCdpy1FLOQpIaglJmOk4iVeqsunUC0IITGu5J/8qgAuIKrjpKCs"
    "CyyEqt4sxK26L/ap5ii7I36gGyczp4Qkhq3dnN6kHxBHoAOsZCmwLS4WnSZ6KY2kVIOCpJcoXhtAI6UsZqLUp08p"
    "XCU8p/2rGC0XKf0r2ClHoCcm46sOFy2m/qd4qReVVKeKrB8pCyOkn3qova5nGxQqlCx9IWkjmh4MqDaplCtSEh0k"
    "eqssIp+tkyt9LQauEiSaKTogQKmrpIqlWCvKI6yqw64uqH8rbqJJqA8sEB5TH2SqZCnBKkquIiqUp3qOPx8OqAeq"
    "6qcgICCrOCP/pMuoZqydIhaoFal6qTOlhSqaKHImvakjJ3KsyCdkoOWo3aYAgAooHikCp3Wciijcp4CsuCLWrLSo"
    "wJsVKNGrESqso3wnGyYDqkwXnqfzLP4qgCFtJ7iwP6c1MBEc1ijQI3iv1Cffp88okiNLK4Qlbxw1JYkq0J3ZGHKo"
    "zKZSo6Il3qkUrt2YLaZNpiOpsKikKdknAKzOJtOjRKgBJnKgPiTUMJurmabIplGoIqtdJSUkdykEKRMv9SfmrCMh"
    "0aoaqg4bhyJDH1ykdaXbpjQnBKrgJMqiKZ69JOutk6zRLJuncxoAgCWtvapaGWgcmaqoqt4szy7oKRwsfqcBoool"
    "RqnxJRMj+S3uLTAsCiiEmuCsW60lLYMkLTDSJqKqUaopoISsq6aFqIktNKy2KDCmcKRnpmkeJRlXhLon2jGVJ4yZ"
    "Fa1ZpNAoqKzMK0WjS6H8pAeqzahaK9arX6sqHA0lyaa4ILSi+KyHpFIuQakjKMOqly0VIqmq+53NKUOpJ5NHJEEg"
    "gihOrFWoLpzzLY2rOC21pq0n5hppndslBzKpKC8sHy4AgKYiCaywqFSpSqWspwSsralzKo+nHpZSKYCwBaWCn1or"
    "zx3iL+0lTCFTKTswbyWBmoauk5mZl2uaWa3NqFChcaikq5KtHq8nJn0kWavjmo0nky1xsACdBiApKSwcUymOmTqb"
    "DRGXLJyich8+KuMsZCZgJr8o+p91LA0w+Sc8qX8aSzA2qFqmTimnqFop/ifDKK0fuSjmp0wsISggJvikoam+rJil"
    "1y3mKEmofKDEJcOskarxLFSpmaY7KD+kCavlmPoh7ymgI2etDhorrPMnvyWXK/8mhpw7rOIiN6CfLqKvzCrIHSuu"
    "2ixVKPooJa9bq3ssSatenOqr4qUiKG4tsyyIKNqrcKwanw8ErSpXpzwnIyX/ntuo2aYjMRUhqSzpKB0feCysLfMo"
    "FaUZK64odimVpBaspiyCKQeoRywfquupDKVPLAYfyCUZpV0lZKUrLiSr/CabJ72fAx9EpvClnKCvrggsMhkALD0o"
    "+KxlJxqpQipOr/UgByYTrD2n16wAgNusxKQPqEuubCw8qMugUyBDrEghkaKjGBgma6TAqqKrjCNsqC6pAKHZLfAj"
    "9CPxmaEYvavaKQmpp6WZo/gb7KZ+Jecn16h1qKqpUislnbUmBSxUHZ4tdixnGDgilKiUKoYo/igLLfeniSQNrr6p"
    "HqvMql6vDaVGLCCbrbAlKsumyCjhq6csrK2jLMcre6v1LXig7qvvo02sQqP5oUSskSRPKnke9SbCKUSolRx4qRUs"
    "QKt/KVAqsypFJAqs+SgAAEKs46qXqsWktq08J0It+inWqrAruygaLgUskSmUIHUlUq57qlkpnakCqXQp3JkIJZsb"
    "iSsoJgSaKh12r/Sm2KbrpcMjsSmIKNmtQKuRqsCkMRvyJCuraKr5qJ4hB6jeK4IqsCgEHq6pBixFLGUs8C8Sqj2X"
    "MqltLo4piCYvLpqnUadErBulp6wxmHOaaB2ALgWlAqEkKQYq4CwUJp+o66mfpF8e+6FppVohqaH3ntoeiqgUqGQs"
    "yKyUJXCnfaoAgI2u8KUlrAynD6IyI2qluLEDJiYmuCatqswkqahwJeEsU64coMsowyg4qQwkWq5NKKwm3aRoqdEp"
    "FyhkqGoovaogKbKq4qO2prwm062fLKWg8S4QJdwsLaeMqoAr8CU0qHcr6yoToFAnQKEEl4ytBKppHtshRyhbKuwg"
    "iSozJbIrICmspkUtNyv3ojgc/qj7KLekfKiNqx0suq3BKvYm0qnyps4it6PVK4Wv9qr4rK4oXpn6IJsdEiH3p1Ss"
    "kaiFp8CeeSnWJd2gRC2EIAIttaT+oDwhq6qoKwsowJ1QKTIrmSlzpvuvfSizHWaVQq2aJ3SoIKhzLOktaixiCUwo"
    "eyndLKErfSSYIfscHy2poSWl7a2dJzCuHqvEpLOtFSaKJmer06qHrNyogqnKmGouIaRUqW2rqCQYIiMqACyUKBYj"
    "iyREqbEldiePKsok+KtUKUQiBqpspRWqa6JplqSg2C1nqhapZaxppWmmb6gEqmMu+akbLcWorCZoI6Qtf6UAgIii"
    "F6ffEUEdl6QmrcKp3a0SrPSgoqYLrRKl862BnRaufCkEqXEtO6DZqLonyCU3IjWgpqCVqI6hKSxcmjood6juJZkn"
    "fKH4pIwnIS3fKOOt+KkLqGatzaYsKm+mASQyqqmgz6W3l7WmxqAZJxIpYx4sJH+sc6etK2+klC1GKc6pWq2AJI4o"
    "KCpCrYctZx4uESae+qFCKT2jiSNUrM8u2ZkRLf+oqCwNp3yoJhQVIq+pQSBvrLqpRhiykEmibSgAANqqqB0IsNAt"
    "1ayxoFcfQyctrLIuYysFIl+t0Sg/pRQPxi2dqI8lfqsQqNosDCgKLsguqirSkj8m3C0XqxwgHSoalfMtbSlpLfKl"
    "TqivoRGmV6bBLFEl+x3IKewpGijZJzcryCOkq1ods5x8LPym6CD1oJyhY7B6J62saKycn4YocCWGHuGp6aaoKoGi"
    "fi/KLPciKq0opSst7KsHL1UmIiUYL6ktjCYKrBys6CYGqzyrFqeFGJyouqlXLN8oB60AgOEd86bsKK0sfiNDFKok"
    "dCBOKowleay+qYOtzS9xrMSuvKoYKnAtWCY1Lf+gBiqgGUwlHCiJKPCo3yT7J5OmWZ+RKJikG6WWKk8ljCDqpzmn"
    "VqkbpnugYKu+KgAo4ClxLJ4wcKyVpVGgLZ5SJ8yqsySIqNwskanLru6vPanmrf4sEiFWKZmZ6ijBJgSq6KbIpaie"
    "CK3YJumtzJihqyKpA5feKxkfmKtPp52myCz/JR8lIBiPnl8pKp9FqbWsUZUrKzgjxSYJLIimOJ8Aq3ImqBptJHWs"
    "35IqJtenqCyxq6KctCS6HpMdb6cTrRgqaCmOrTmx+yuXpMIuLalrmFIoqylLKHCikKw/KLOtjC3KrNsrcqUrLMem"
    "OiwYKo4kK6j+qP6tPCEHHBcpwarFHmajNRh6JFCoyC4UrOYhzil4p5Iib6nhpc6siSguq7Il2Kv5qb6pHKejIEyr"
    "cxHMq3QsJixroCSrZKRnprssrKMEJyCmrKxyp/aqw6OHpnEbZCsAgBWkZSzUoiopSi4cnu6m/qrkluulKRivqOCo"
    "56VvnbynISyFKE6jbKQ3rH+oYRxlKBUmnaPDJkSw6qeXpeGqgyeeKGMqmqwfKzApHh8qJJyicSRCKdMlGC1Zrckg"
    "digCLiOYDK7HJyspmSvgq6ghYKhlIx+shqftpxSZsCQFmaGgW6y2qlqveRR1GNWqCSSEnrssUB+6qFQn1Sp2GG0o"
    "vavULC+lXa7TJ0CZmp0zr7ygzCwqKieweqX/LVaiGq0AAIkrNCh5rZgunizsHDmejRtjqcCpiqjpAnKozq1MrP0l"
    "DCgiLfwue6alpuAq3qMgKlsjPS1GLHYll63RrMIgA7EGLGCqVyE2K/cs2ak3KE8t2yH8pdyrsSrUpVWmTZ1tpQ4d"
    "qi25Gt0iR6oHKCmoACiAqw2l6yRAoheufqUMLF6rhCyBKvcccKW9KUace6J7pykcWSrSLBirSy5urgwj4Ca2reyn"
    "HqJfK6KgeS24KYAqA6pAKMIgjCv8L+AuNigAgH0s3KlhrCIstC3LrWSi/6dmIMGrLajfKLWTZp06KD0dRZ3ArQar"
    "viRaLDIqxCVVIYYodhvrJ2gtPaaELKih/ymFqe8nRCQvpyOt+aQYLQwtN7AfqTgrYym9qA2qSaIXJCeojizbpnmp"
    "Xy3tLqMq+6PkKWUn9y2+KV+n/im6qlykryXQrAEURKYMqfoq26QLK3ulb6BIKm0ooiQepROcXqSwJTspWq+rroMq"
    "eaTUo/QshCVorE6sGqKmKImudqtnLl0u0CiIrHeiTKuQJxst2SCGqRSiyJizLEqnPiLNrGyrFCLTJbmsbKQ/qMQs"
    "NKVoriinR6eeGZcuza0/qTOpJqMsGFypZar8JZqdZChHA3EZBa4ULFEmcSm3LKUh9hnrrUWuEqwlKAiuMKwpoEkn"
    "gKRuoFaoP6pnqKwoVyEVmhscI6VDpFKo6y0rppIsiCnvGv2o96haJqwqsiidrGYumiUIJLEWYqD3riaiSyYnLEkw"
    "Vioap8GoIiN8r0crOiIAAGmryi2MKLqo9i79pDGvuikCrccqb6yfqJEgBiwtK22uZ6VGHhen3aKLnbYnrie0oFAi"
    "gKlIIiKpbqhZJQmdficXngMhiadnJg8nSpv2JHytRyVXqICrryfOqPYhEyz+pW2tlijroqOiXKkmpJWd8auuLNYg"
    "DSzgLbQnySwjLp8qOSt0GJSskKYcKJwkzqsanUSp1Buvn+qrvKWrqJKk3a28rhGdOiIZqmQivqmMIbWtxpzMrt6t"
    "uBjVLGukMygAgIWdLCSQKbYh5SyVrs0tLTA5JrAqtCkYrH0gMay+LWOrETBJoludDSk/qaqqoq5zLm+nnCy3oRqh"
    "DpzYIciql67opQEm56tCpHktSS+wG7QnQyhAplIrUS/WpFSoNKh4EtutlqRhKMIoJqvdJcWkNa0XIkSomKv+o8mp"
    "HanVJIAoZi09rRmlOqtUJY6lVJzqKE2vESjLrOqjkBNeJ8eooqVrpx6nX6C/KSkq1yQbJt0vnB2BKfUkbSgKLTim"
    "BKkBgHin9adDqEYU2C1bJwGp9BByrBGkbSlbKYyr+Cn3KNaoIpc9KtWTmiqurAQrvScsqDWiK6flrYIhVCzFrnol"
    "oSqooG2rHidzJ9CnbSjLoNMp4ibGqEKiGyiTLRGpxyhxqCMkOaRMqNEn5R4vqAUoNB38rB0SUqxzqVgsDKpbpeSo"
    "m68vKjiZo6GmKkUhYy++EYCthqx0FYqouCTmnj8mjqdxq3WqUaVvJxOsJya4Ji+erKG9lcSkMijpGUqroKmCJqAt"
    "ZqayqGQeQaxMrEQlbSmaJX2pZqjeKzMsBq2MJ4chDizFqaukGaeGm6+o8ipXpbMjsasyJEGoeyTgkDuxby3brCAk"
    "MSrIn2Wmnis4LH+oPhNnr1IqTSgPK8Em3yr8KDMPoCTyrSycv5JAqtaeB6biqLcqcKkoq44tRKpWrdypbydwKImt"
    "gDaaKMkkRS4HoBImXqvSq8ieOx+MJT+mSqgZDA8opCkOLo6opZyYKbgK25lfprQbMCP7LDywCx8AgIMflRk4Iv+Y"
    "JycHKasb8qlso9wqwB6xKOylMSgALe4gFCDjGbSXzhxaopeS5qWAKTynSazvKImsJiX7Ff8VZCqkprwSz6hcp0Yo"
    "x6ybqJMma6qMIW+pd5kJnVQxupQUnSasdyzFmXalb6+MKd2aJqU9JKGpRyWnoPkgCyllosogia02qkQmWaDnJXmi"
    "h6q1KNQo6idfp++kFKWWKCktpx6KKF+p2x4qphUu/ipTHKKqOyFDqZOo2StWmqEtJR4AAPCs3SSTqK8tfqSomcUo"
    "xS3srVssuyXFqegnsinwnYModiwpnDWnk6jPpyWoH5l5KE+pvCc4Kg0sjqW2KP0oCaZ7qnOrLSphLbUoXZJcJneq"
    "FCkqoZkYfS+fpfKdKKrCG4Eo8iz3rSSioKVJKeGlQxyIqX4s4aTKD50d2iZNqOUi06X1KEempqhXl7uq2h6eplGw"
    "qxQKqtiquKR7n/Kg1KhaqLckGaClnUuoK6WMJYIhW6sLJWqf5iWyL6QaMiEAgPupMykeq7mXNitbKlGpKSiYJs+k"
    "biynJh+nXyvYLdmjtK4QpyekiKhboSuj0oxarRAgIR+pqckswywyqXyXFSVdI0UlqyUfrBSsIiQTIbGdAKv4pYMs"
    "oB4bqnibAyAYnVyi+6y1kxmgLh5mLd4u2iHYIoei3iuQKBQxDDD1KQak"
)
INT8 = (
    "m6yqKg8rMC3GrZytuyzKIRmtj6ejIoCWDKEMqTInmqDIKBap7K5DHuyrPCi/pVkmNqz3q30oNCl4JW+sIioeJx8u"
    "tpoOmJssEq6grMMke5s/ober05zGqNIptaj/IFYqoSrJooSrL60QqSEmFzD2Jyio6KEDK16qRaiPKNWsVanaJNKq"
    "t6zErASsy6x2pi0UmKoemguoGCOLJMqNDCBWGnIpG61XqaQgIiYRovQmXyp5pB4pOq2QKVcpPaHFrq6oGiwYFx6w"
    "ojRKK7YtdSSSJ1GZhpgerNYmcJ6QIcGfMaabqFwfGi4BJ2SkISopJ54c0CQMD1QgZyPDIngkSSUAgHMpSagXKV0x"
    "06VgolisnKuwKW8rMireK2ClHimCJHMuVKhsKe+jbSpeqtce7icGLe4pnKi/JB6u9SsYJSSnDqnHIzQqShsxjzwe"
    "HqyfqsQYdatUJ3Am86VyJ7MdBSCJJROMhigUqwonw7DkKOyizp1jpxOq0ii4IFEq2y7fqNEZdqz7qd4ogSPFK7Ko"
    "O6lUoGIipiTjmLQoUigFGz0pOqntIV4oqKUlGmwqfCrJqGytmaUqqNCrgigYKiUjvaAAAIUw+yyDrnan6KrWoFam"
    "Ny9ysLgdCSayor8rWCU3KtgncDBYKmOoep+trMaZxqnYmPybQ6RUhWIsxq1RpmAtAicjnPkofCVhLjMjYKuYKZKs"
    "iKMbKjcg1C7Ep/KqX6qHJ6aooSONrfaqqSSgJa+lTCPXpQ4mbh4jp90k5SyVKQItqaS1KIqmjpLCm6aouSoEpP2j"
    "CClLo6KWJqbtnKWkOiCbnT0pQaTgnrmgDKXTKeEpUBWQqgsl5ykfpoiepqgAgCmXJhidIbkqxSjqJqyuuqf7pTMo"
    "rywOLTCs4B6QLkgqPaksmh6rFa54nJEgISdfrB2dI6gaqAQpu6AOIQiJeTGUqrijqKffqBSdCyX8LDikgarqJKWg"
    "g67ooXIlayl+rRmkAK3MpxkpvyvBLDEs2CwJJkSj9qs1o60r2ShGKvIfvar7rCCjwSKSKL6oHCRjK2Gs2Ko2qQam"
    "1KGwJVMi+yNlqJWoTq9BKo+svx7xHDcVTqyFqjkk6izxJQSogK6gKPYuXSkgI1CpVqyDGN4qLihmGwyst6UnKB0q"
    "0CN0Kl2o3Z/mKCCcEa39qymklShvJ2mrOxrEL9CpJ6yIpxiwaaHdpi0haajXpv+pR6HMKbOnNSq2rPMkdagxn9yn"
    "3SbQLYSpH54oq9Ci960doLAtdClUqtwrcCnHquIsTxdfKc2hI6UIKMSxWjJKK6cpXKN0K/Ghkq00p3gbyKcIqEWh"
    "dSNAKMEs7SnWLzamxiuTLdafGRGMpM+g9SyCqVavBCIAgEIkzKeCIfiYGyK6Kbqd5B8eqtUkECW4JdiuCiVeMFow"
    "pyrzLdyUxCCUJCysaKrfLN6p4ScQpECuJyoKKq6dQSf1rbEppye5qpakkKm9qlknTaiEI6isPSYIIiEsOSaopTer"
    "MSx3oL8p/a4YqnWv6p2opFQplyh2JYAn+iw3oy6rXKnTH04mgSLsKVGpvaYIImQtTy50GRWkxSq1pSEpyacyLN6W"
    "6ajKLEMrQiUIKp8mvig0oLmtQCpQKJgpOJ8AAB+rpTAfq8UhbalrKuYqWChQp44jmKD8qDucZxfULPso7ykQoVmj"
    "Ai0drLMl8qTbLC6kRSOjp6skmyuCJgEpKazKq/iluicqLJEnd6nmJsqdzCT0qr+o8S9SGW6olxy/ph4qNy55qfOr"
    "bqZ6J/uqPoukJ0abhaghqTaf0idPoEwsJSdlpGeowyTNHeCpJxw1qGKwTamVLAOoXiFhpWIh3yMop/SgqSxKH94m"
    "1KcBLX8lPaoZq1+kkiIuLVasUKQAgHagM6jeKdImkiuzLeyhxp6UoQMlLC18pyCpWR7GK/6mPamZsCGobSaGnkEs"
    "eCwslVgo+CU/LBUp7h/Sq3YueR7YH1mnmaZ2plWsvKjOJk8lXalQp2opQipFrzQoh5cArMus7hyYKNKu9qKQJVIs"
    "oatzJpOocitdlgYttg57KnGlgqoUq8QuCCuir6qpDyljq/Ej0SCOKLOljiYSJrKlAqX9mEklzh/+I5msw6foK7sr"
    "Hqo2KNCVpKRPKResqqNpLsUmQSvRKn8j2SiRKXghQCyKJYKlpi/arY+oLqkPrI+syShDooSp2an5H4orr6HTlZWo"
    "fB6oLIYp454YK4cf/ScPrHCRkK2oprUlqqfRpFArKS0RKfSuAyluJ6gZgyxtpAqw76pboWgvPyxQLTqmsSyMrB+u"
    "Tq3MIJWoHqBXqYCqJZ83rNOpoisVqesqHyY1Hp4qSKk7ow4lDSwbHg+nNqpRqIMqxR0arMel95/4KymrGaHfLRyq"
    "iKy1KzmelRwAgF4sIivOKGGlESr7KpGqRSkxqjaqRBz9pdSiLqg1ICcqyx7DptAkbSFfKy+m+qCkK+6Xx6nwotym"
    "ZCw1KC4pzaC0KkaV/a4hn/IisqtZqBQvrC1qq3crw6kEqiId/CtDrF2ojqaKJE0cYCoPq3ukSSCkLIar1ZwhLG4p"
    "4yLFJNUhAyqsreqY0yY9rq8qgCihKMsmVa7KLY6k16sRnIclcq3Vl5ckdah8K5ie5Ro2pzohRa9gqQkQE64XpAqq"
    "vxgAAKWpWiwVLRopR6kcqCynjCwkLdcoMakTJzecQKjfLCShPJ/uDKorxa/zrBYpL6qYKf4mvivLKe8pLaVrrWOr"
    "5axhqR6ubit0LNuuYKpqJK6qLighrUOGzCmKLIInoSHmJQei0CgIrI8j46v5oUqgOZiyqI0jfKgSqW4k2BuMrKYw"
    "cq9Upietb60GKkqgs6WFKRGqmiS4qQQsBCwBrCIokSAPpdepdihwI3Ypp6H4qNsrnBXvKUCjJy28IEqspKkAgLaj"
    "3yr3oGOm3S2AlU8pg6UmKewpbSnUqnulcyrdKdopGzBMJEYpFS1zqkGrSiyOqhGsnKxGKvKg96jFJCUYlikfHkMs"
    "0iOMrPAoRq7fKaMfaiuyKdiovaRBmiUjnyxOsFUo4iQbsT4nVqRqmiqlc6VAo3Ksoix1KB4jX6pppu4pDJ+EL0eo"
    "LCcqqA4ody0YKu8n2KHlKHCsEpxzojeslKx9qB6e0KiyKCcY7aW4LDUpga+NKpUkgit7KhGoQZ2NnLwrm6l9l1Sk"
    "hKAaplKhgqEarB6r3SZTIPYlSKMGrYUajiscqaWrGqt9r6WtECqCq2AsJqkBI8+gwihFJaegFivUp0Cluit8J8ag"
    "pxDupgys6acEqbCovyhOJ/yqeKMpKGsoPa0mqtapi6M6JIIkfispoN2h8azqleiohKxtsDUo0qhPrbmlwSLkpiAg"
    "LCjsLIquDKZHKkMoKSShKkaqBq4ZrIaqQSizK9okMKw7IOgkNB34JESqpqokrGclNDAAgNyrAqdKo8yrTanuKMkr"
    "pyiypp0raaipLE0cEiaLrBQcTCfMJnon6KlZJkQonCd1If4sHa+dpocoryTgHxcpZSnqpnybfSbDKOYoMS7BLVAr"
    "WjCRqmWlPKpXLE0ZbqTLHOcpiSjlh+OktK7ULm0miyRbpAYmv6yGq9gkIBmeq1Wruq02rB6f5Z/jIlkXTq2VphIu"
    "6CNmqf4nW68PKqoiYiphpa4oOSwmIc0peSoXpbup1qR4Knit9CIfLBMtxZwAgLcqhSZkoFKmb6vMH/IpsqmnENmp"
    "5icNqp8vGK3uozqoIKV1LlqhuisWo8qrrSJFJDopgxpRMMup/SiZpnQoJqhsKUwusqsVqn4t/6w/pnwrGScyLnAn"
    "aSyXHsspP6xrnOeq6KNiLdSsX5jmnqQlryrLJlWimJvBKmEiuSlYIc6kfiuanhCknCrRJAimmSwqoK2vDJ47rdYd"
    "7ayEpiIs+C3ipzos2x26pw2u56X7qDYlapYhkNepeC2FKECtfi0AgNSntq1AnuscgSkqrT6th6wZIgmoNS6qKpGt"
    "UCpeqC0s/yiYKDYnVqJNJQ2iSKOMrbSo8yh3q0UsriYzIbqeSKmNI8Od5KuWq5guDChXriks7TDhJM8aaagvFf+o"
    "JCJxLM+sWqrXofshPKbPJ++rhZ2Co70tQZ8EKwIsjygDKaymsSxcMPctnSMhrccqli1FjiCoGapbK36v2qkLpI8h"
    "caxeJMap65YXqAgiQJ1bIy0s+6XuJ/CcdisDLUMpqKifKr4c26GqFmQmCCFgpWinSRVgrTQbyiWFokSoYSlIniop"
    "kCbRpEOplq1HqKEg6CgLKc0kvqIJJfOgE657GPmhg5w3MPokjhaYI7ugRK4FILSiux3VqRqtBSNPq8aoW6VXGEao"
    "JKtuqREt9SfxJo+lnSx0pkCcEqm6KUyr6yN0rSgrGqqJJgiVHCQGK5sjDiLiLY4iWKz3IUeqVKPsqNirIa4brLqt"
    "KqCUJ4QtK54Jrjacbp2TJU2pt6YerTouCS8AAAkjTK+QGv8ndqgNHHGjXSxiJZKloCZeoCifz6raKDqjrCvfpxwr"
    "Q6BVKN+sg6BLqEikDayNHJKs6iQZKPegXaw1o4EqUB3aInkity+QKKApyic9q5Gt961IMEwpz6NNpPgthiHhJZyh"
    "ka39J38v9Sg4J1qiB62hLVUkKiqIFCqd3ZhZqmAk3KsHIeicOqjlqAswOCuHq8ieRKgJLkeqgSm4qNGqSyFKLbcs"
    "BB3vKfAiPyZepbis7anKLZSfS60AgJ4quyrPrpKnG61/J1ymxi4xqTcgH6wVpLAuU6AHqNEkVixJKxOpmixbqOuu"
    "GSaYK4CjBihzMFsosatKJPqovaErKSAst6oipNQpIq2OJEIoM6bZJK8v3yIKqT0tuq+tJrytMx7QLHWoMSUYqAAk"
    "USxAp1shdybuE/Yqj6ilG30kpakerS4kdyb+IaOhsSqsnBSqjacZra0p4iapJDkpVaZ/qrksKKe7pc6nIx5mrzUo"
    "kCi6qjymGi4frDSujxwAgJgmL6vuoyweGal3q/6NQSZtJcYrjS/hKPeoJSfnrPumLxzBobyV7aYjKGqlPijcn6Sa"
    "QisHqZ0p0RygKHgnAihdqUkk4K2Wq7ElEyzJrpSraSiLnvGj1aQZKh2tbi18I4mRpSOvrf0qIivEmbOnaSkVpNOc"
    "2yCol+QmYS0/sBEmJKyzqzgo4KqenJcrmy1iKLwotqlgIPCqhilarBWdG7FtKPqW7isUJckrLSlvHH0mCahaHzEt"
    "Q6gdKG+oMSn7J6unB6jkoVmkCC1PrnEolS5csL4psawLr54qFShaJmclya6uHAqni6F+KMmjqC2vKTeWhawoL08r"
    "SZy0rYeeGB4CrLepfSvZqIut/SUWmOymaaWzqVOayy2xmBeV7qfjqoaa46iWKZgnYim1qEosgJgvLkIc3qkUKWSr"
    "Rahbqf6i3KkFq/YgjihiJVkosCjVKB6stR5aGv6hqipmJ5SjJqWgpZmr5ZSaqk4pcbA1qreja5XdJOqst6YWKjKq"
    "YSwAAC6qTy3aIS6orytwKh2wiC1CpGUdI6JAIr+orCNulBQtFSw5JdItx6xzpcGq0CtMLS0oJq0ClpCmfKigpakq"
    "SKb9KYQn1qpVpkItDC4WJdAp+xh0Ha+ksJ+em8Er0CVTpOQrd6yjp7ifdKzdLP6pTia7r12kCijLrCQrzyryKVmZ"
    "5qlfHfmi0ybPL56lkKgRJAcvXSS0Kk0jDqx5JCQk9iphrfmowSbPJUooGKa7qAmgoya5K5ypq5wJjympvaUAgA0o"
    "gaIuH0Uu/6BIJAqpvZ25rViwOq37q6EwrKcEIx0vGaW/p+KkjqQ5oG6s8y1jIf8ivSzwKBsfgagmJkwkX5wrKoIk"
    "PiMGL40pmCyMmQ8tAKYnIX2phCmtKnuc/6ERqwqqDKpOK2wh+6w9pQ8pQKcpqAmrwq2VKXUu6Su/qdCodC6LpJWr"
    "NihALqSdWCz2qBka1Cfaqg4omKaXmz+oihwlrWilyasUqbMZlaKEp/6nCS14qoSpgh4/LBumbikAgJspU6usHQYt"
    "JSuerwqtrKshpXgN1av9p7igjyqBJvws4hxMJr6jfKaTCm2rtKRErMWl8alam0yqQqPRrVOk+ieXo1KnVSRPrD0Z"
    "fyWkpHKmdCuMJMeqQarwrLqimJ4wLAwsXS1jqZCiBi3jK+UpOaYqJ/idNyUMqnmlWi2YIJCuJKUNq9wts6kOpJ+s"
    "RCxsqhItca1xLz+rKCnJI+qhPyeApTAlka0In8CmMBYXl9WrWymaLQ2Q+iSbKYilOZ7eocEoF4RnJY0sHJUbpvco"
    "NCXrp0OrSy15KKsr7yi9HFwlA6yBm3+lBqioqVecx6RMrA8qsiM+op6naa7QkR8qOyxzIqUiWCEGpy+plCyYlPQi"
    "SqvCIIWtRCwhLjKuxCR1KbsgPancpbKmsyv9IeOqx673qPsqZKVUqEAqPSSTJLiqqyi5KnquKis+qH0iiSCEp/up"
    "5qetkgmrDSJdpCio76spJA6oGKiLqbGjiiqjKSkkyqlgKBWtQCdpoJypXqcAgLgnbCmQpaqf2yh4qEqsbSTBrKOo"
    "K5znJ/OrSSofp7kmeiV+qu+cNahkLDorih+8JrSwtqgmMDkfJSn6I2ivKSgvqC8pKCGCKiAcpRw7JRIrtBctF9ao"
    "8qWaoHolvaksri0WxqbVpRipT6mZKbone6uMJsegmahaJVmhESPYMEarTKe+pC6p7asUJKYkFynOKT4u2iZarKkh"
    "XKp0qhojCh4WHpqiUKQtpiwoUKlMJD6k2Z6MJMWt+6wYLe2nNp8AAE2s5arOmB0eQqocq8IsFy9nKjUswKXipB0o"
    "MakgJ2IijC4ZLsQrASgWIdSsba1wLUcj7C+1Jz2qsKrfn8GstagNqRstKaxbKDKm5qXLp9AhP51bGtUn+jFOJ1kd"
    "+KxuonIogKzmKy+kXqLXpJioHahtK5GrR6yaIFElEKa3IP6hsayto1AupamjKLmqqC3rI2esdZyeKjipPRrHJKQf"
    "licyrEupwZvXLUOqTS3TpQkp7CJkFaMl8TGcJzIrLC4AgMogdKswqeapLqb6pkKrXKnFKrKm4JYIKrewKKVNpG0r"
    "0iD5L8skbiOJKSIwJSZEnu2tLqDmmLafwKxrqPibuag8rOetwa98J6ElgKuymiwloS1QsGQcuCG6KGYU8igTHzGh"
    "fBaTLDefgRk4K7gsZyYbJKInGps2LBowoSj1qEKM9y+LpV2n1ihJqQsoKSpIJvcYuymVp/sroChvJVelqqkRrUOj"
    "WC0lKmmpOB56Jzasy6oPLf2pjKdVKHqhh6rWnVYe8Sk3JA6tih5aqxYotSgAKj0mg6EkrGSRuqEJLqWvECziHa6u"
    "3yunKMEnLa9SqmksC6vVnuirVaTkJz8tFC2YKAGsBqzIohQZrSmap6cmXyVmoS+prahHMTUe9SxRKawgMywbLk0p"
    "eaYzKoYpbymzpeyrMCz5KCmoyCv/qU6pZ6QTLMkjMSlNoe4kyaRSLh2sjSXwI7GgJR5spd6iJJ0drzUrcJ9CLAwo"
    "bK3NJt6o3ynHrnqUeCherMSnd6wAgDetyaUCpiuu0ixEpVyjwx48rOMa9qGAnU0mcKVgqpmsPR2TqFyquKCsLdAk"
    "ziYxnRQkQ6uaKTKpcKQ4ouwa8KZhJaYnC6pHqN+p1yoCo3ojASx0IvEtFizWFHYk7KjUKXYo5yhCLe2mxiMCrnap"
    "8qpYqWuviaUILLSamrAzK1ioOyg8rPsskqx1LUEriav7LTkbOaxspKOrUKRDopCsmCVQKXoaoCj5KfSn+hjwqCAr"
    "waoxK5op/yuQJQqskSgAAIWsV6kEq0ulEK7gJj0tGyqZqzwsXCiPLqksFClRIqQlr677qUMpAqnDqO8ptxwDJlcW"
    "wCpWJhyUgRVXr06mI6mppgcjhykTKBaudauuqYqkAh1dJReq9Kh7qrYaWacILD8qIydPkCWqBSzTK5Es4y+Pq7Cg"
    "baqELvkpAyigLTemzaSqq6yoC62CojsfCCPHLjOlu6JSKicr/SycJBGogKpCpF4WZ6OUolIeVKFBn0sgFqgsp2Es"
    "UKwKJ1KmXKkAgHquBagRrKqmcp/yIt6a57ESJFUkzCVlqS8n2KiqJS8smK5DoqAndijiqW8i863sKQomhKXYqS0r"
    "cCdUqCUpeaqIJiGrXaIwpkAmuq3HLPyhdC5MGEItFKRbqyEr7iQgqAUseipaouwm7puDkcmt5alUFG4lzCWPKsgh"
    "LSuSJaArLyroptksFiwuoTwgmKgTKuSopah2qxEs+62jKjYowqkTpbsjJaWfK7ev56qwrIoopJ+9JAuWhCDApn2s"
    "46cSpm6ipSePJh+eUS2GIc4s1aUfnC8eTao/K1kmPKHYKHsqmiozpUqw4CjgHzij1qyUKBSpy6S3KxkucCzRnlYk"
    "ACliLQ4rwyFEG+0fySx5nNylpq0EKHatcqrfpEqueCf3JWyrBqxhrNuoIqmWHVYuMqNnq1yqRycDJGcqKCwjKRgk"
    "BCV8qC4mminQKhAnYqsYKUAkG6tRom2puqSPGsCi/i34qhOqyKsXpl+ms6j2qXQuGqpBLZ+o3idlInYuEqIAgJqh"
    "y6jvHL4f8KUDrRuqya2dq+ahOqYprVSl+q3eouStgSkJqXUtzBFhpm4oCyWWI7qgjKK+qGudESzlFZYmV6fIJS8o"
    "u5a3pHQmcyyaKDSuOaq8p9ysWqcvKk2nwB2LqQqiIaQrnGqnaaRbKEgoaCK1IUisCKb9K2misi3VKf+q4q0KI+cm"
    "zCh5rWQtvh0JGLKYJ6HrKhyhDx4vrLAus5r5LL2nPyx6pYmo0iFPIDipayBjrIerzBuqll+hTScAAGGrhSDGrwIu"
    "Ba0wnaQdgCZhq7ouNCtwIWGs2Scrpd4OGS1hqT4mPqt4qD4tsyarLXYu5CpHl8wl3S0xrCYhtCqQoQ4upCmTLa6l"
    "rqg+pnGmyqbbLOomdSTtKV8rLyZNJmoq+CXWq0wa+KRbLPqkwCChmSyiZbD4KLaswazNohgojSckGruo76WpKSSi"
    "rS9HLGQhcq2gpssty6sEL0EoYyVFL2AtOSZcrI+rfyi1qrmrfactHsenPaklLB0prKwAgA0gNaJ1KIIsKSIKopsj"
    "xSEpKuAnX6wnqeytOi9irOCuuqn0KRIt+SMoLZqj1yiKm30kAyg2KIqoOyWfJrWlNJs9J9Kmz6WSKislXR86qMqm"
    "36gnqImcAasyK0spIirDLKUwS6z8pPikjaCpJv6qBCSdqLcsQKkWr9qvR6mIrj0tmCSbKb8dnyioJxeqbKfXpEIT"
    "oq0xJ7mtbp8Jq3KnMJ/8KxQgX6vPqFalnyzCJE8lEyC0nmQpL6BmqYus2JhoK58kQCU8K2mjr5pQqiUoWhqeIlWs"
    "uhwsJ4KovSxlqwqgiCVrItUdkKVOrUoroiqprRCxKSwuo74uhqqIokUoXCrkJ1ajUawyKKOtRC4srS4sqqBOLLen"
    "CiwbKqQmnKYBqZCtWxvkHGQofaqvHb+hKBD4IrummC6VrGIgHSqvpvYbu6q/pSmtEikuq7UlHqxnqzepeaa2DcSq"
    "/Rb4qlos0Cw5mHmrMaPdoVMs/6HHJw6m+ax5qHKqLKSZpiMhBSwAgFqmuCy3oTso0S1yoTaloauVoPSlzZFBqUSo"
    "pqdtkYenDyxhKIqmmaElrGyo4JlpJ/IlnaTzJhKwoKe+pFisTilKKFQrOqzRKrYpeSLsJGykASa1KfQimCwTre8X"
    "JyfILfWHG66CKDYo4CsdrMQdDqiQIgas8KfWqPcT3CKzm1OeSKwIq3avs5NtmeWrxiUfmTMsfyAaqCAoyithnTso"
    "XKvYLMKlza15KK8dGRxVrxqGrixtK2uweqdVLUGa8awAAM4r/CiNrYQu/CvbFc8F9SBeqQ+qdKfOnASppa2HrMsk"
    "uifhLFYv0qZIpSEqgKWlKe0hhC1vLEUoUK6krPCSFrEgLN6pGiPCK8os1qp/KNUtlR3VpXKrPytJpd2mWRmlpaeX"
    "Xi3VHoAiVKpnKYCoFChNq3ym7SMFoy2uMaVqK+mr4CxpKlYZ46SjKruf86FNqEmg1ikJLVaq1i2Arl8h+CUSrS2o"
    "naC1Kjiiuy16KaUqfKoDKcsdJiwXMDwuRiUAgGssNKo1rGsr5S17rXmkIacRkYSrxacfKVYZOaMsJruUa59+rXmr"
    "oiMpLFQq/CX/IrgohR3xKKctPaZwLMukiipcqkcnFiLYpgKtyaJBLTwtHLBEqaQpBiqZqPepqZ2PIbWoyCsJplCp"
    "bi3vLmQpup84KbAmVi3WKBSo5Cp3qVmlyiTgrbqdhKQPpR4qi6F4KwimMKUZKsYpByQMpXUiV6TaJjEmd6/4rqQp"
    "pKUipAItAyRprA+twqI0KGiuEKtuLvYtmihyrE8Gb6qYJjwtNYbDqSWkBqGGLIWpNSCjq0qrGSEbKPKr46ScpQ0s"
    "BKevrfOnhqK+lVIv0a0tqtuoLqD0ncOpfqpcJd0WpyNRnPQdeK5nK4MnUiojLSwl5RrRrvCth6yOKIiuIKzPnFUn"
    "zqaaos+nW6gtp6MoLiKLmAghyKeCpQGpCi5fpiotVChlG1So3alMJWEqkyiAqlsuOigQJh4hE6VWrn+kqSfJK80w"
    "ACs/pdymmR+br/4qGCQAAEKs7S27Jo2p+y5/pwuvvCr6rLgp9qwvpwQfjyx2K1+uAacPISSlx6OdgYQomyfrE1Ql"
    "yqkJIe+mcahEJSuebCZmoBQi8qhuJ5ImMaFgIk2t/yXZpB+s4CdXqTAaGixOpkOtbCQ/pQil1qiKoiKjjas0LOAc"
    "myzdLQIn+SzFLUoqMyoVnNOreqVlJycdmaqcG8qp2xyrGe6rnaeHqHKcGK7lrkeiPiCeqHIj86hGI+Wt9qIyrqut"
    "/x4ULbejHykAgMYYriPMKdshXi1hrv0tAzAKJvAqBirwq5AgPKtBLVGr/S+boQyjVCmKqDGp266WLiOnzyxEoUah"
    "HaQXJgOq161npzwo3aqMo3ctQS8gmbcmJCr1psgqZi8Mo9WmiaYunAiutKWYJ20oLKsXJoei3axbJr2o0qwsp/Go"
    "+KjNJZQoPi15rVSh66qwJhmmP5YuKLKv5CYArXcawR0nJdSpDqfbqMGk2aQAKqIq/iFTJS0vsiFFKeAmgCRxLFOo"
    "YakBgO+nRaaVqHMgpC1jJ6eoqSCYrAOhFCkfKtGr1SjfKcCpiaDQKSCeISr8rKMq5iTZpuuhaKgzrXUfpiy7rrgl"
    "pyrdohqsHiiDJNmmrSd2nG8qQiY1qPWimCguLhaoSicipHEkTqbSpwAoNRDKpLIo2YN6ruYT/KuFqZYsf6ojor6q"
    "FrDzKEuiWJv2K1wcqjBZGdqsN6zboF6oThv8IcopuKSiqdWoRaVOJQyssCHSKYal2qWnoc+g9SlWIgmscqk2KPct"
    "HqVsqZScRKwLq9Qn4yg5JVeqX6g9LN4q+6w0JLwgGCxKqbmnGqdBGoapAyvBpucQuqrMHCaoPaCDIFKxuS3frEIm"
    "mylvpZSmECtoKwqouJ85sEsquynPKUIlISukKycgSZmLra2gmwxuq2YRGqhCqZsrRKZRqpwt46ghrV6qiiTKKX2t"
    "ITZyKA8mmy5cnTYmJ6werE6hgI7YJ16nDqkaofcmBCRlLWypNCC2KIokpiHYop8c0SZtLOGwZCUAgEEcNiBjJN2a"
    "xB8BKhwiX6lPmw4ovyXDKMij7yTzKfoeliB4IIwcRSeXoWMgtKQJJu+oVayEJqKspim8IaAjKSszp6uduqjOpxQi"
    "W63CqPgjAKnAIHqlzJujohsx/yP8DXmspyw9oYqmy681KjaeSabHJJGm9ye9oXAh4ynloKQgCa4Zqg8lNKRDJhyl"
    "D6sZKcEqViWZqV6iwaIWKAgufJiAKdyohB3Kpx4uxSoyIAapNCa+pcSoHir/pJUsBx8AAFGtII51pYUttqUfou0o"
    "4ixvrvIrFSIQqqsnzSq5JIoolSyHIvujx6hGpvyoR5ogJMCpjSUwK+kqCaPPJ2wrzqZxqJKpSiogLgMnRBa1JfGq"
    "+SjTn2uaAy/fo/ekVqw5IRYo7i2grjWmP6RvKXSkuCJvqlksFaRUn/OY4ie6prEmO54HKyClDaiOGd6pjJ3/pwiw"
    "kJ4eqqiroqQRpQcj6amSpcslDJzZHPeorKYxIo4V+6u3JD+djCgBMB2kxyIAgF6qcCCDq/ah5CqtKRSpwySFKCiX"
    "ayxfKEGh5yqALZKEqa39pFKh9qX7ICSczB5arEYkA5VYqhEtky2tqcuJ2CAuJAMk4SWpq7qsNCGGJ66h1qpzq98s"
    "JRPqqY+h6yQEokylMK1HobCk45mxLcYuc6IDJKKiaSrIKCMx4y/GKTWj"
)


def _reference(blob: str) -> np.ndarray:
    rows = np.frombuffer(base64.b64decode(blob), dtype="<f2").astype(np.float32)
    rows = rows.reshape(len(TEXTS), 384)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


@pytest.fixture(autouse=True)
def _needs_the_model() -> None:
    ok, why = local_model_available()
    if not ok or not onnx_runtime_installed():
        pytest.skip(f"local model or onnxruntime not installed: {why}")


async def _one_by_one(emb: LocalEmbedder) -> np.ndarray:
    return np.concatenate([await emb.embed([t]) for t in TEXTS])


async def test_float32_gives_torchs_vectors_without_torch() -> None:
    emb = LocalEmbedder(precision="float32")
    try:
        ours = await _one_by_one(emb)
        assert emb.describe()["runtime"] == "onnxruntime"
        assert emb.model_id == "all-MiniLM-L6-v2"
        cosines = (ours * _reference(TORCH)).sum(axis=1)
        assert np.all(cosines > 0.99999), cosines
        # batched (padded to the longest) gives the same vectors as one by one
        together = await LocalEmbedder(precision="float32").embed(TEXTS)
        assert np.all((together * ours).sum(axis=1) > 0.99999)
    finally:
        await emb.close()


async def test_int8_gives_the_vectors_the_torch_export_gave() -> None:
    emb = LocalEmbedder()
    try:
        ours = await _one_by_one(emb)
        assert emb.describe()["precision"] == "int8"
        assert emb.model_id == "all-MiniLM-L6-v2-int8"
        # int8 products are computed by the CPU's own integer kernels (AVX2, AVX-512 VNNI
        # ...), so the vectors differ a little from one CPU to another: near the ones the
        # export gave on the machine that recorded them, and near the float ones, but
        # a space of their own
        cosines = (ours * _reference(INT8)).sum(axis=1)
        assert np.all(cosines > 0.93), cosines
        near = (ours * _reference(TORCH)).sum(axis=1)
        assert np.all(near > 0.95) and not np.all(near > 0.9999), near
    finally:
        await emb.close()


def _run_without_torch(code: str, env: dict[str, str]) -> dict[str, Any]:
    """``code`` in a fresh interpreter where torch, transformers and sentence-transformers
    cannot be imported (as in the default install); it prints one JSON line."""
    prelude = textwrap.dedent(
        """
        import sys
        for name in ("torch", "transformers", "sentence_transformers", "scipy", "sklearn"):
            sys.modules[name] = None  # any import of them raises ImportError
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", prelude + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **env},
        cwd=Path(__file__).resolve().parents[2],
        check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


_EMBED = """
    import asyncio, json, sys, time
    from builtin_plugins.memory.embedders.local import LocalEmbedder

    async def main():
        emb = LocalEmbedder(cache_dir=sys.argv[1] if len(sys.argv) > 1 else "")
        began = time.perf_counter()
        await emb.load()
        loaded = time.perf_counter() - began
        vector = (await emb.embed([{text!r}]))[0]
        await emb.close()
        print(json.dumps({{
            "describe": emb.describe(), "loaded": emb.loaded, "load_seconds": loaded,
            "vector": vector.tolist(),
            "heavy": [m for m in ("torch", "transformers") if sys.modules.get(m)],
        }}))

    asyncio.run(main())
"""


def test_the_graph_is_built_once_then_read_from_the_cache(tmp_path: Path) -> None:
    """A start with an empty cache builds the graph (no torch anywhere) and keeps it; the
    next start reads the same file and builds nothing."""
    cache = tmp_path / "cache"
    env = {"LLMMC_CACHE_DIR": str(cache)}
    first = _run_without_torch(_EMBED.format(text=TEXTS[2]), env)
    files = sorted((cache / "embedders").iterdir())
    # the int8 graph (the default) alone, 12 MB (the word embeddings are read from the
    # weights, and no int8 tensor is large enough to go to a .data file)
    assert [f.name.rsplit("-", 1)[1] for f in files] == ["int8.onnx"]
    assert files[0].stat().st_size < 16_000_000
    stamps = {f: f.stat().st_mtime_ns for f in files}
    second = _run_without_torch(_EMBED.format(text=TEXTS[2]), env)
    assert {f: f.stat().st_mtime_ns for f in files} == stamps  # read, not written again
    for run in (first, second):
        assert run["loaded"] and run["heavy"] == []
        assert run["describe"]["runtime"] == "onnxruntime"
        assert run["describe"]["model"] == "all-MiniLM-L6-v2-int8"
        assert float(np.asarray(run["vector"]) @ _reference(TORCH)[2]) > 0.98  # int8, near float
    assert first["vector"] == second["vector"]  # the same graph, read back
    assert second["load_seconds"] < first["load_seconds"]


def test_an_unwritable_cache_still_serves(tmp_path: Path) -> None:
    """A cache folder that cannot be made (here a file stands in its way): the graph is
    built in memory at each start, and embedding works."""
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("")
    run = _run_without_torch(_EMBED.format(text=TEXTS[0]), {"LLMMC_CACHE_DIR": str(blocked)})
    assert run["describe"]["runtime"] == "onnxruntime"
    assert float(np.asarray(run["vector"]) @ _reference(TORCH)[0]) > 0.97  # int8, near float


def test_the_cached_graph_changes_with_the_weights(tmp_path: Path) -> None:
    """The cache file is named for the weights: another checkpoint (here the same config
    with one tensor changed) gets a graph of its own, never the packaged model's."""
    source = find_model_dir()
    copy = tmp_path / "model"
    copy.mkdir()
    for item in source.iterdir():
        if item.is_file() and item.name != "model.safetensors":
            (copy / item.name).symlink_to(item)
    data = bytearray((source / "model.safetensors").read_bytes())
    data[-4:] = np.float32(0.5).tobytes()  # the last weight of the last tensor
    (copy / "model.safetensors").write_bytes(bytes(data))
    ours = bert_onnx.cached_path(source, "float32", tmp_path)
    theirs = bert_onnx.cached_path(copy, "float32", tmp_path)
    assert ours != theirs
    assert bert_onnx.load_or_build(copy, "float32", tmp_path) == (str(theirs), False)
    assert bert_onnx.load_or_build(copy, "float32", tmp_path) == (str(theirs), True)
    assert not ours.exists()
